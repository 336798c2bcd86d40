package kube

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
	"sigs.k8s.io/yaml"
)

// Template is a SandboxTemplate read from a file, with where it came from so
// every later message can name the file.
type Template struct {
	*extv1beta1.SandboxTemplate
	// Source is "file:line" of the document that defined it.
	Source string
}

// LoadTemplatesFS reads every *.yaml and *.yml file in fsys (recursively),
// each holding one or more SandboxTemplate documents.
func LoadTemplatesFS(fsys fs.FS) ([]Template, error) {
	var files []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isYAML(p) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading templates: %w", err)
	}
	var out []Template
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("reading templates: %w", err)
		}
		ts, err := DecodeTemplates(f, data)
		if err != nil {
			return nil, err
		}
		out = append(out, ts...)
	}
	return out, checkUnique(out)
}

// LoadTemplatePaths reads templates from files and directories (the *.yaml
// and *.yml files directly inside, like kubectl apply -f DIR). A path that
// does not exist, or a directory without YAML files, is an error: a typo in
// --templates must not silently deploy nothing.
func LoadTemplatePaths(paths []string) ([]Template, error) {
	var out []Template
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("templates path %s: %w", p, unwrapPathError(err))
		}
		files := []string{p}
		if info.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, fmt.Errorf("templates path %s: %w", p, unwrapPathError(err))
			}
			files = nil
			for _, e := range entries {
				if !e.IsDir() && isYAML(e.Name()) {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("templates path %s: no *.yaml or *.yml files in this directory", p)
			}
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("templates path %s: %w", f, unwrapPathError(err))
			}
			ts, err := DecodeTemplates(f, data)
			if err != nil {
				return nil, err
			}
			out = append(out, ts...)
		}
	}
	return out, checkUnique(out)
}

// MergeTemplates returns base plus extra, where a template in extra replaces
// the one of the same name in base. The result is sorted by name.
func MergeTemplates(base, extra []Template) []Template {
	byName := map[string]Template{}
	for _, t := range base {
		byName[t.Name] = t
	}
	for _, t := range extra {
		byName[t.Name] = t
	}
	out := make([]Template, 0, len(byName))
	for _, t := range byName {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// DecodeTemplates strictly decodes every document of one file (source names
// it in errors) into typed v1beta1 SandboxTemplates and validates them.
// Unknown fields, duplicate keys and other kinds are errors, so a typo fails
// here instead of being dropped by the API server.
func DecodeTemplates(source string, data []byte) ([]Template, error) {
	var out []Template
	for _, doc := range splitDocuments(data) {
		where := fmt.Sprintf("%s:%d", source, doc.line)
		var generic map[string]any
		if err := yaml.Unmarshal(doc.data, &generic); err != nil {
			return nil, yamlError(source, doc, err)
		}
		if len(generic) == 0 {
			continue // only comments or blank
		}
		tmpl := &extv1beta1.SandboxTemplate{}
		if err := yaml.UnmarshalStrict(doc.data, tmpl); err != nil {
			return nil, yamlError(source, doc, err)
		}
		if err := validateTemplate(tmpl); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, Template{SandboxTemplate: tmpl, Source: where})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no SandboxTemplate in this file", source)
	}
	return out, nil
}

// validateTemplate checks what the API server would not: that the document is
// a v1beta1 SandboxTemplate that can actually start a sandbox.
func validateTemplate(t *extv1beta1.SandboxTemplate) error {
	want := extv1beta1.GroupVersion.String()
	if t.APIVersion != want {
		return fmt.Errorf("apiVersion is %q, want %q", t.APIVersion, want)
	}
	if t.Kind != "SandboxTemplate" {
		return fmt.Errorf("kind is %q, want \"SandboxTemplate\"", t.Kind)
	}
	if t.Name == "" {
		return errors.New("SandboxTemplate has no metadata.name")
	}
	if errs := validation.IsDNS1123Subdomain(t.Name); len(errs) > 0 {
		return fmt.Errorf("SandboxTemplate name %q is not a valid name: %s", t.Name, strings.Join(errs, "; "))
	}
	containers := t.Spec.PodTemplate.Spec.Containers
	if len(containers) == 0 {
		return fmt.Errorf("SandboxTemplate %q has no containers (spec.podTemplate.spec.containers is empty)", t.Name)
	}
	for i, c := range containers {
		if c.Name == "" {
			return fmt.Errorf("SandboxTemplate %q: container %d has no name", t.Name, i)
		}
		if c.Image == "" {
			return fmt.Errorf("SandboxTemplate %q: container %q has no image", t.Name, c.Name)
		}
	}
	return nil
}

// checkUnique rejects two templates of the same name from one source set:
// which one wins would depend on file order.
func checkUnique(ts []Template) error {
	seen := map[string]string{}
	for _, t := range ts {
		if prev, ok := seen[t.Name]; ok {
			return fmt.Errorf("%s: SandboxTemplate %q is also defined at %s", t.Source, t.Name, prev)
		}
		seen[t.Name] = t.Source
	}
	return nil
}

type document struct {
	data []byte
	line int // 1-based line of its first line in the file
}

// splitDocuments splits a YAML stream at "---" lines, remembering where each
// document starts so parser line numbers can be turned into file lines.
func splitDocuments(data []byte) []document {
	var docs []document
	cur := document{line: 1}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, l := range lines {
		trimmed := bytes.TrimRight(l, " \t\r\n")
		if bytes.Equal(trimmed, []byte("---")) || bytes.HasPrefix(trimmed, []byte("--- ")) {
			docs = append(docs, cur)
			cur = document{line: i + 2}
			continue
		}
		cur.data = append(cur.data, l...)
	}
	return append(docs, cur)
}

var (
	yamlLineRE     = regexp.MustCompile(`line (\d+): (.*)`)
	unknownFieldRE = regexp.MustCompile(`unknown field "([^"]+)"`)
)

// yamlError turns a sigs.k8s.io/yaml error into one line "file:line: what",
// with the line from the parser when it gives one, or found by the unknown
// field's key when the strict JSON decoder complains.
func yamlError(source string, doc document, err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "error unmarshaling JSON: ")
	msg = strings.TrimPrefix(msg, "while decoding JSON: ")
	msg = strings.TrimPrefix(msg, "json: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := doc.line
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		// At the end of the input the parser may name the line after the
		// last one; keep the message within the file.
		last := bytes.Count(doc.data, []byte("\n"))
		if !bytes.HasSuffix(doc.data, []byte("\n")) {
			last++
		}
		line = doc.line + min(n, max(last, 1)) - 1
		msg = m[2]
	} else if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
		key := m[1][strings.LastIndex(m[1], ".")+1:] // the decoder may name a path: a.b.key
		if n := keyLine(doc.data, key); n > 0 {
			line = doc.line + n - 1
		}
	}
	msg = strings.Join(strings.Fields(msg), " ") // one line
	return fmt.Errorf("%s:%d: %s", source, line, msg)
}

// keyLine is the 1-based line where key first appears as a mapping key, or 0.
func keyLine(data []byte, key string) int {
	re := regexp.MustCompile(`^\s*(-\s+)?"?` + regexp.QuoteMeta(key) + `"?\s*:`)
	for i, l := range strings.Split(string(data), "\n") {
		if re.MatchString(l) {
			return i + 1
		}
	}
	return 0
}

func isYAML(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// unwrapPathError drops the *PathError's repeated path: callers name it already.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
