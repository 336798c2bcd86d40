package sandboxtest

import (
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	"k8s.io/client-go/rest"
)

// TestNamespaceDefaulting: WithNamespace, then $SANDBOXTEST_NAMESPACE, then
// the kubeconfig context's namespace, then "default", as sandboxtest-setup's
// -n does; a WithRESTConfig has no context to read.
func TestNamespaceDefaulting(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	assert.NilError(t, os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: from-context}}]
current-context: x
`), 0o600))
	t.Setenv("KUBECONFIG", kc)
	for _, tc := range []struct {
		name, env string
		opts      []Option
		want      string
	}{
		{name: "option", env: "from-env", opts: []Option{WithNamespace("from-option")}, want: "from-option"},
		{name: "variable", env: "from-env", want: "from-env"},
		{name: "context", want: "from-context"},
		{name: "rest config has no context", opts: []Option{WithRESTConfig(&rest.Config{Host: "https://127.0.0.1:1"})}, want: "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SANDBOXTEST_NAMESPACE", tc.env)
			s, err := newSettings(tc.opts)
			assert.NilError(t, err)
			assert.Equal(t, s.namespace, tc.want)
		})
	}
}
