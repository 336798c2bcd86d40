package kube

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

var (
	sourceLineRE = regexp.MustCompile(`^fz\.yaml:(\d+)$`)
	errorLineRE  = regexp.MustCompile(`^fz\.yaml:(\d+):`)
)

// FuzzDecodeTemplates checks that DecodeTemplates never panics; that an
// error is one line starting with the file name, and its line (if any) is
// in the file; that each template it returns is valid, comes from a line of
// the file, and decodes to the same template once encoded again.
func FuzzDecodeTemplates(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(repoTemplates, "*.yaml"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		validTemplate("a", "img") + "---\n" + validTemplate("b", "img"),
		validTemplate("x", "img") + "        imagePullPolicyy: Always\n",
		templateHead + "metadata:\n  name: x\n  name: y\n",
		templateHead + "metadata:\n  name: x\n   bad: indent\n",
		"# only a comment\n---\n",
		"--- \n--- x\n",
		"[1, 2]\n",
		"a: &a [*a]\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := strings.Count(string(data), "\n") + 1
		ts, err := DecodeTemplates("fz.yaml", data)
		if err != nil {
			msg := err.Error()
			if ts != nil || !strings.HasPrefix(msg, "fz.yaml:") || strings.Contains(msg, "\n") {
				t.Fatalf("DecodeTemplates(%q): %d templates and error %q; want none and one line starting with the file", data, len(ts), msg)
			}
			if m := errorLineRE.FindStringSubmatch(msg); m != nil {
				if n, _ := strconv.Atoi(m[1]); n < 1 || n > lines {
					t.Fatalf("DecodeTemplates(%q): error %q names line %d of a %d-line file", data, msg, n, lines)
				}
			}
			return
		}
		if len(ts) == 0 {
			t.Fatalf("DecodeTemplates(%q): no templates and no error", data)
		}
		for _, tmpl := range ts {
			if err := validateTemplate(tmpl.SandboxTemplate); err != nil {
				t.Fatalf("DecodeTemplates(%q) returned an invalid template: %v", data, err)
			}
			m := sourceLineRE.FindStringSubmatch(tmpl.Source)
			if m == nil {
				t.Fatalf("DecodeTemplates(%q): template %q has source %q, not fz.yaml:<line>", data, tmpl.Name, tmpl.Source)
			}
			if n, _ := strconv.Atoi(m[1]); n < 1 || n > lines {
				t.Fatalf("DecodeTemplates(%q): template %q has source %q, not a line of this %d-line file", data, tmpl.Name, tmpl.Source, lines)
			}
			again, err := yaml.Marshal(tmpl.SandboxTemplate)
			if err != nil {
				t.Fatalf("encoding %q again: %v", tmpl.Name, err)
			}
			back, err := DecodeTemplates("again.yaml", again)
			if err != nil || len(back) != 1 || !equality.Semantic.DeepEqual(back[0].SandboxTemplate, tmpl.SandboxTemplate) {
				t.Fatalf("template %q from %q does not survive encoding again:\n%s\n(error %v)", tmpl.Name, data, again, err)
			}
		}
	})
}
