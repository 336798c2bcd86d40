package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/icmd"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/agentsandbox/go-sandboxtest/fixtures"
)

// unreachableKubeconfig writes a kubeconfig whose cluster listens nowhere
// (port 1) and returns its path.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	assert.NilError(t, os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600))
	return kc
}

func TestDoctorUnreachableCluster(t *testing.T) {
	kc := unreachableKubeconfig(t)
	// Piped, the rows say ok and FAIL (✓ and ✗ are for a terminal).
	res := sandboxtestSetup(nil, "doctor", "--kubeconfig", kc)
	res.Assert(t, icmd.Expected{ExitCode: exitUnreachable, Out: "FAIL API reachable  https://127.0.0.1:1", Err: "1 of 1 checks failed: the cluster cannot be reached"})
	assert.Check(t, is.Contains(res.Stdout(), "fix: check KUBECONFIG, or start a local cluster: sandboxtest-setup local up"))
	assert.Check(t, !strings.ContainsAny(res.Stdout(), "✓✗"), res.Stdout())

	sandboxtestSetup(nil, "doctor", "--kubeconfig", filepath.Join(t.TempDir(), "missing")).Assert(t, icmd.Expected{ExitCode: exitUnreachable, Out: "FAIL kubeconfig"})
}

// TestDoctorCommand: doctor against the shared cluster: every row passes
// where deploy ran (exit 0), the router row fails where it did not (exit 1),
// both as -o json; --context picks a context that is not the current one.
func TestDoctorCommand(t *testing.T) {
	ctx := context.Background()
	kc := localCluster(t).kubeconfig
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	assert.NilError(t, err)
	_, err = fixtures.Deploy(ctx, cfg, fixtures.DeployOptions{Namespace: "doc"})
	assert.NilError(t, err)

	res := sandboxtestSetup(nil, "doctor", "--kubeconfig", kc, "-n", "doc", "-o", "json")
	res.Assert(t, icmd.Success)
	var rep DoctorReport
	assert.NilError(t, json.Unmarshal([]byte(res.Stdout()), &rep), res.Stdout())
	assert.Check(t, is.Equal(rep.TypeMeta, typeMeta("DoctorReport")))
	assert.Check(t, is.Equal(rep.Context, "sandboxtest-local"))
	assert.Check(t, is.Equal(rep.Namespace, "doc"))
	assert.Check(t, rep.OK)
	var names []string
	for _, c := range rep.Checks {
		names = append(names, c.Name)
		assert.Check(t, c.OK, "%+v", c)
	}
	assert.Check(t, is.DeepEqual(names[:2], []string{"API reachable", "agent-sandbox CRDs"}))
	assert.Check(t, is.Contains(strings.Join(names, ","), "template python-sandbox-template"))

	res = sandboxtestSetup(nil, "doctor", "--kubeconfig", kc, "-n", "doc-nothing", "-o", "yaml")
	res.Assert(t, icmd.Expected{ExitCode: exitFailed, Err: "checks failed"})
	rep = DoctorReport{}
	assert.NilError(t, yamlUnmarshal(res.Stdout(), &rep))
	assert.Check(t, !rep.OK)
	router := DoctorCheck{}
	for _, c := range rep.Checks {
		if c.Name == "sandbox-router" {
			router = c
		}
	}
	assert.Check(t, !router.OK, "%+v", rep.Checks)
	assert.Check(t, is.Equal(router.Fix, "sandboxtest-setup deploy --namespace doc-nothing"))

	// --context: the kubeconfig's current context is a dead cluster.
	both, err := clientcmd.LoadFromFile(kc)
	assert.NilError(t, err)
	both.Clusters["gone"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	both.Contexts["gone"] = &clientcmdapi.Context{Cluster: "gone", AuthInfo: both.Contexts[both.CurrentContext].AuthInfo}
	good := both.CurrentContext
	both.CurrentContext = "gone"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	assert.NilError(t, clientcmd.WriteToFile(*both, path))
	sandboxtestSetup(nil, "doctor", "--kubeconfig", path, "-n", "doc").Assert(t, icmd.Expected{ExitCode: exitUnreachable})
	sandboxtestSetup(nil, "doctor", "--kubeconfig", path, "--context", good, "-n", "doc").Assert(t, icmd.Expected{Out: "ok   API reachable"})
	sandboxtestSetup(nil, "doctor", "--kubeconfig", path, "--context", "nope").Assert(t, icmd.Expected{ExitCode: exitUsage,
		Err: `context "nope" is not in kubeconfig ` + path + " (contexts: gone, " + good + ")"})
}

func TestDoctorHelp(t *testing.T) {
	res := sandboxtestSetup(nil, "doctor", "--help")
	res.Assert(t, icmd.Success)
	for _, f := range []string{"--kubeconfig", "--context", "-n, --namespace", "--template", "--gateway", "--timeout", "-o, --output", "(default 20s)"} {
		assert.Check(t, is.Contains(res.Stdout(), f))
	}
}
