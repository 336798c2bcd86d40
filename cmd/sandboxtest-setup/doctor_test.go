package main

import (
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestDoctorUnreachableCluster(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	assert.NilError(t, os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600))
	out, errOut, code := cli(t, "doctor", "--kubeconfig", kc)
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(out, "✗ API reachable  https://127.0.0.1:1"))
	assert.Check(t, is.Contains(out, "fix: check KUBECONFIG, or start a local cluster: sandboxtest-setup local up"))
	assert.Check(t, is.Contains(errOut, "1 of 1 checks failed"))

	out, _, code = cli(t, "doctor", "--kubeconfig", filepath.Join(t.TempDir(), "missing"))
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(out, "✗ kubeconfig"))
}

func TestDoctorHelp(t *testing.T) {
	_, errOut, code := cli(t, "doctor", "--help")
	assert.Check(t, is.Equal(code, 0))
	for _, f := range []string{"-kubeconfig", "-namespace", "-template", "-gateway", "-timeout", `(default "default")`, "(default 20s)"} {
		assert.Check(t, is.Contains(errOut, f))
	}
}
