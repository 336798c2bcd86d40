package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// The repository's own templates (what templates.FS embeds).
const repoTemplates = "../../testdata/templates"

func TestLoadRepositoryTemplates(t *testing.T) {
	ts, err := LoadTemplatesFS(os.DirFS(repoTemplates))
	assert.NilError(t, err)
	byName := map[string]Template{}
	for _, tmpl := range ts {
		byName[tmpl.Name] = tmpl
	}
	assert.Assert(t, is.Len(byName, 2))

	py, ok := byName["python-sandbox-template"]
	assert.Assert(t, ok, "python-sandbox-template missing: %v", byName)
	c := py.Spec.PodTemplate.Spec.Containers[0]
	assert.Check(t, strings.Contains(c.Image, "python-runtime-sandbox"), c.Image)
	assert.Check(t, is.Equal(c.Ports[0].ContainerPort, int32(8888)))
	assert.Check(t, is.Equal(c.ReadinessProbe.HTTPGet.Path, "/"))
	assert.Check(t, is.Equal(c.ReadinessProbe.HTTPGet.Port.IntValue(), 8888))
	assert.Check(t, !c.Resources.Requests.Cpu().IsZero() && !c.Resources.Limits.Memory().IsZero(), "%+v", c.Resources)
	assert.Assert(t, py.Spec.NetworkPolicy != nil)
	from := py.Spec.NetworkPolicy.Ingress[0].From[0]
	assert.Check(t, is.DeepEqual(from.PodSelector.MatchLabels, map[string]string{RouterAppLabel: RouterAppValue}))
	assert.Check(t, from.NamespaceSelector == nil, "a namespaceSelector would admit routers of other namespaces")
	assert.Check(t, is.Equal(py.Source, "python-sandbox-template.yaml:1"))

	env, ok := byName["python-env-template"]
	assert.Assert(t, ok)
	c = env.Spec.PodTemplate.Spec.Containers[0]
	assert.Check(t, is.Equal(c.Ports[0].ContainerPort, int32(9999)))
	assert.Check(t, is.Equal(c.ReadinessProbe.HTTPGet.Port.IntValue(), 9999))
	vars := map[string]string{}
	for _, e := range c.Env {
		vars[e.Name] = e.Value
	}
	assert.Check(t, is.Equal(vars["SANDBOXTEST_GREETING"], "hello from the template"))
}

func writeTemplateFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	assert.NilError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

const templateHead = "apiVersion: extensions.agents.x-k8s.io/v1beta1\nkind: SandboxTemplate\n"

func validTemplate(name, image string) string {
	return templateHead + "metadata:\n  name: " + name + "\nspec:\n  podTemplate:\n    spec:\n      containers:\n      - name: main\n        image: " + image + "\n"
}

func TestDecodeTemplatesRejectsBadDocuments(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"syntax error has its line", templateHead + "metadata:\n  name: x\n   bad: indent\n", "t.yaml:5: mapping values are not allowed in this context"},
		{"line counts from the file in a later document", validTemplate("a", "img") + "---\n" + templateHead + "metadata:\n  name: b\n   bad: indent\n", "t.yaml:16: mapping values are not allowed"},
		{"unknown field is found by its key", validTemplate("x", "img") + "        imagePullPolicyy: Always\n", `t.yaml:11: unknown field "imagePullPolicyy"`},
		{"duplicate key", templateHead + "metadata:\n  name: x\n  name: y\n", `t.yaml:`},
		{"wrong kind", strings.Replace(validTemplate("x", "img"), "kind: SandboxTemplate", "kind: SandboxWarmPool", 1), `t.yaml:1: kind is "SandboxWarmPool", want "SandboxTemplate"`},
		{"wrong apiVersion", strings.Replace(validTemplate("x", "img"), "v1beta1", "v1alpha1", 1), `t.yaml:1: apiVersion is "extensions.agents.x-k8s.io/v1alpha1", want "extensions.agents.x-k8s.io/v1beta1"`},
		{"no name", templateHead + "spec:\n  podTemplate:\n    spec:\n      containers:\n      - name: main\n        image: img\n", "t.yaml:1: SandboxTemplate has no metadata.name"},
		{"invalid name", validTemplate("Not_A_Name", "img"), `t.yaml:1: SandboxTemplate name "Not_A_Name" is not a valid name`},
		{"no containers", templateHead + "metadata:\n  name: x\nspec:\n  podTemplate:\n    spec:\n      containers: []\n", `t.yaml:1: SandboxTemplate "x" has no containers`},
		{"no image", validTemplate("x", `""`), `t.yaml:1: SandboxTemplate "x": container "main" has no image`},
		{"nothing but comments", "# empty\n", "t.yaml: no SandboxTemplate in this file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeTemplates("t.yaml", []byte(tc.content))
			assert.ErrorContains(t, err, tc.want)
			assert.Check(t, !strings.Contains(err.Error(), "\n"), "not one line: %q", err)
		})
	}
}

func TestDecodeTemplatesReadsEveryDocument(t *testing.T) {
	ts, err := DecodeTemplates("two.yaml", []byte("# two templates\n"+validTemplate("a", "img-a")+"---\n"+validTemplate("b", "img-b")))
	assert.NilError(t, err)
	assert.Assert(t, is.Len(ts, 2))
	assert.Check(t, is.Equal(ts[0].Name, "a"))
	assert.Check(t, is.Equal(ts[0].Source, "two.yaml:1"))
	assert.Check(t, is.Equal(ts[1].Spec.PodTemplate.Spec.Containers[0].Image, "img-b"))
	assert.Check(t, is.Equal(ts[1].Source, "two.yaml:13"))
}

func TestLoadTemplatePaths(t *testing.T) {
	dir := t.TempDir()
	file := writeTemplateFile(t, dir, "python-sandbox-template.yaml", validTemplate("python-sandbox-template", "my-image"))
	writeTemplateFile(t, dir, "other.yml", validTemplate("other", "img"))
	writeTemplateFile(t, dir, "README.md", "not a template")

	fromDir, err := LoadTemplatePaths([]string{dir})
	assert.NilError(t, err)
	assert.Check(t, is.Len(fromDir, 2))

	fromFile, err := LoadTemplatePaths([]string{file})
	assert.NilError(t, err)
	assert.Assert(t, is.Len(fromFile, 1))

	// A file replaces the embedded template of the same name; the rest stay.
	base, err := LoadTemplatesFS(os.DirFS(repoTemplates))
	assert.NilError(t, err)
	merged := MergeTemplates(base, fromFile)
	assert.Assert(t, is.Len(merged, 2))
	assert.Check(t, is.Equal(merged[0].Name, "python-env-template"))
	assert.Check(t, is.Equal(merged[1].Name, "python-sandbox-template"))
	assert.Check(t, is.Equal(merged[1].Spec.PodTemplate.Spec.Containers[0].Image, "my-image"))
	assert.Check(t, is.Equal(merged[1].Source, file+":1"))

	_, err = LoadTemplatePaths([]string{filepath.Join(dir, "missing.yaml")})
	assert.Check(t, is.Error(err, "templates path "+filepath.Join(dir, "missing.yaml")+": no such file or directory"))

	empty := t.TempDir()
	_, err = LoadTemplatePaths([]string{empty})
	assert.Check(t, is.ErrorContains(err, empty+": no *.yaml or *.yml files"))

	_, err = LoadTemplatePaths([]string{file, filepath.Join(dir, "python-sandbox-template.yaml")})
	assert.Check(t, is.ErrorContains(err, `SandboxTemplate "python-sandbox-template" is also defined at `+file+":1"))
}
