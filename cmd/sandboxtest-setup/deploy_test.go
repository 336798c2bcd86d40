package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/icmd"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
)

// TestDeployCommand runs deploy and install-controller against the shared
// local cluster.
func TestDeployCommand(t *testing.T) {
	ctx := context.Background()
	kc := localCluster(t).kubeconfig
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	assert.NilError(t, err)
	cs, err := kubernetes.NewForConfig(cfg)
	assert.NilError(t, err)

	t.Run("deploy prints what it applied and its state", func(t *testing.T) {
		out, errOut, code := cli(t, "deploy", "--kubeconfig", kc, "--namespace", "cli")
		assert.Equal(t, code, 0, errOut)
		assert.Check(t, tableRow(out, "KIND", "NAME", "RESULT", "STATE"), out)
		assert.Check(t, tableRow(out, "Deployment", "cli/sandbox-router", "created", "1/1 ready"), out)
		assert.Check(t, tableRow(out, "Service", "cli/sandbox-router-svc", "created", "-"), out)
		assert.Check(t, tableRow(out, "ClusterRoleBinding", "sandboxtest-sandbox-router-cli", "created", "-"), out)
		assert.Check(t, tableRow(out, "SandboxTemplate", "cli/python-sandbox-template", "created", "-"), out)
		assert.Check(t, tableRow(out, "SandboxWarmPool", "cli/python-sandbox-template", "created", "0/0 ready"), out)
		assert.Check(t, tableRow(out, "SandboxWarmPool", "cli/python-env-template", "created", "0/0 ready"), out)
		assert.Check(t, is.Contains(out, "deployed to namespace cli of the local cluster in "))
	})

	t.Run("a second deploy changes nothing", func(t *testing.T) {
		out, errOut, code := cli(t, "deploy", "--kubeconfig", kc, "--namespace", "cli")
		assert.Equal(t, code, 0, errOut)
		rows := 0
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(l)
			if len(f) < 3 || f[0] == "KIND" || f[0] == "deployed" {
				continue
			}
			rows++
			assert.Check(t, is.Equal(f[2], "unchanged"), l)
		}
		assert.Check(t, is.Equal(rows, 10), out)
	})

	t.Run("a template file adds to the embedded ones", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "extra.yaml")
		assert.NilError(t, os.WriteFile(file, []byte(`apiVersion: extensions.agents.x-k8s.io/v1beta1
kind: SandboxTemplate
metadata:
  name: extra-template
spec:
  podTemplate:
    spec:
      containers:
      - name: python-runtime
        image: us-central1-docker.pkg.dev/k8s-staging-images/agent-sandbox/python-runtime-sandbox:latest-main
`), 0o644))
		out, errOut, code := cli(t, "deploy", "--kubeconfig", kc, "--namespace", "cli", "--templates", file, "--wait=false")
		assert.Equal(t, code, 0, errOut)
		assert.Check(t, tableRow(out, "SandboxTemplate", "cli/extra-template", "created", "-"), out)
		assert.Check(t, tableRow(out, "SandboxWarmPool", "cli/extra-template", "created"), out)
		assert.Check(t, tableRow(out, "SandboxTemplate", "cli/python-sandbox-template", "unchanged", "-"), out)
	})

	t.Run("gateway", func(t *testing.T) {
		out, errOut, code := cli(t, "deploy", "--kubeconfig", kc, "--namespace", "cli-gw", "--gateway", "cli-gateway")
		assert.Equal(t, code, 0, errOut)
		assert.Check(t, tableRow(out, "Gateway", "cli-gw/cli-gateway", "created"), out)
		assert.Check(t, tableRow(out, "HTTPRoute", "cli-gw/cli-gateway-sandbox-router", "created", "-"), out)
	})

	t.Run("router namespace", func(t *testing.T) {
		out, errOut, code := cli(t, "deploy", "--kubeconfig", kc, "--namespace", "cli-rn", "--router-namespace", "cli-rn-router", "--gateway", "cli-rn-gw")
		assert.Equal(t, code, 0, errOut)
		assert.Check(t, tableRow(out, "Namespace", "cli-rn-router", "created"), out)
		assert.Check(t, tableRow(out, "Deployment", "cli-rn-router/sandbox-router", "created", "1/1 ready"), out)
		assert.Check(t, tableRow(out, "Service", "cli-rn-router/sandbox-router-svc", "created", "-"), out)
		assert.Check(t, tableRow(out, "ClusterRoleBinding", "sandboxtest-sandbox-router-cli-rn-router", "created", "-"), out)
		assert.Check(t, tableRow(out, "Gateway", "cli-rn-router/cli-rn-gw", "created"), out)
		assert.Check(t, tableRow(out, "HTTPRoute", "cli-rn-router/cli-rn-gw-sandbox-router", "created", "-"), out)
		assert.Check(t, tableRow(out, "SandboxTemplate", "cli-rn/python-sandbox-template", "created", "-"), out)
		assert.Check(t, tableRow(out, "SandboxWarmPool", "cli-rn/python-sandbox-template", "created", "0/0 ready"), out)
		assert.Check(t, is.Contains(out, "deployed to namespace cli-rn (router in namespace cli-rn-router) of the local cluster in "))
	})

	t.Run("bad templates apply nothing", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.yaml")
		out, errOut, code := cli(t, "deploy", "--kubeconfig", kc, "--namespace", "cli-bad", "--templates", missing)
		assert.Check(t, is.Equal(code, exitFailed))
		assert.Check(t, is.Equal(out, ""))
		assert.Check(t, is.Equal(errOut, "sandboxtest-setup: deploy: templates path "+missing+": no such file or directory\n"))
		_, err := cs.CoreV1().Namespaces().Get(ctx, "cli-bad", metav1.GetOptions{})
		assert.Check(t, apierrors.IsNotFound(err), "namespace cli-bad exists: %v", err)
	})

	t.Run("-n and -o json", func(t *testing.T) {
		res := sandboxtestSetup(nil, "deploy", "--kubeconfig", kc, "-n", "cli-json", "-o", "json")
		res.Assert(t, icmd.Success)
		var rep DeployReport
		assert.NilError(t, json.Unmarshal([]byte(res.Stdout()), &rep), res.Stdout())
		assert.Check(t, is.Equal(rep.TypeMeta, typeMeta("DeployReport")))
		assert.Check(t, is.Equal(rep.Namespace, "cli-json"))
		assert.Check(t, is.Equal(rep.RouterNamespace, "cli-json"))
		assert.Check(t, rep.Local)
		assert.Check(t, is.DeepEqual(rep.Templates, []string{"python-env-template", "python-sandbox-template"}))
		assert.Check(t, rep.DurationSeconds > 0)
		assert.Check(t, is.Equal(rep.Error, ""))
		assert.Check(t, slices.Contains(rep.Objects, DeployObject{Kind: "Deployment", Namespace: "cli-json", Name: "sandbox-router", Result: "created", State: "1/1 ready"}), "%+v", rep.Objects)
		assert.Check(t, slices.Contains(rep.Objects, DeployObject{Kind: "ClusterRoleBinding", Name: "sandboxtest-sandbox-router-cli-json", Result: "created", State: "-"}), "%+v", rep.Objects)

		res = sandboxtestSetup(nil, "deploy", "--kubeconfig", kc, "-n", "cli-json", "-o", "yaml")
		res.Assert(t, icmd.Success)
		rep = DeployReport{}
		assert.NilError(t, yamlUnmarshal(res.Stdout(), &rep))
		assert.Check(t, is.Equal(rep.Kind, "DeployReport"))
		for _, o := range rep.Objects {
			assert.Check(t, is.Equal(o.Result, "unchanged"), "%+v", o)
		}
	})

	t.Run("--timeout bounds --wait; --wait=false does not wait", func(t *testing.T) {
		// A new router cannot be Ready within a millisecond.
		res := sandboxtestSetup(nil, "deploy", "--kubeconfig", kc, "-n", "cli-timeout", "--timeout", "1ms")
		res.Assert(t, icmd.Expected{ExitCode: exitFailed, Out: "Deployment"})
		assert.Check(t, is.Contains(res.Stderr(), "sandbox-router"), res.Stderr())
		sandboxtestSetup(nil, "deploy", "--kubeconfig", kc, "-n", "cli-nowait", "--wait=false", "--timeout", "1ms").
			Assert(t, icmd.Expected{Out: "deployed to namespace cli-nowait of the local cluster in "})
	})

	t.Run("install-controller does nothing on the local cluster", func(t *testing.T) {
		out, errOut, code := cli(t, "install-controller", "--kubeconfig", kc)
		assert.Equal(t, code, 0, errOut)
		assert.Check(t, is.Equal(out, "the local cluster already runs the agent-sandbox controller "+localcluster.AgentSandboxVersion+" with extensions; nothing to install\n"))
		_, err := cs.CoreV1().Namespaces().Get(ctx, "agent-sandbox-system", metav1.GetOptions{})
		assert.Check(t, apierrors.IsNotFound(err), "agent-sandbox-system was created: %v", err)
	})
}

// tableRow reports whether out has a line whose first columns are cols.
func tableRow(out string, cols ...string) bool {
	re := regexp.MustCompile(`(?m)^` + strings.Join(quoteAll(cols), `\s+`) + `(\s|$)`)
	return re.MatchString(out)
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = regexp.QuoteMeta(s)
	}
	return out
}

// closedPortKubeconfig is a kubeconfig naming a server nothing listens on.
func closedPortKubeconfig(t *testing.T) (path, server string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	server = "https://" + ln.Addr().String()
	ln.Close()
	path = filepath.Join(t.TempDir(), "kubeconfig")
	assert.NilError(t, os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
clusters:
- name: gone
  cluster:
    server: `+server+`
    insecure-skip-tls-verify: true
contexts:
- name: gone
  context: {cluster: gone, user: u}
current-context: gone
users:
- name: u
  user: {token: t}
`), 0o600))
	return path, server
}

func TestDeployUnreachableCluster(t *testing.T) {
	kc, server := closedPortKubeconfig(t)
	for _, args := range [][]string{{"deploy", "--kubeconfig", kc}, {"install-controller", "--kubeconfig", kc}} {
		out, errOut, code := cli(t, args...)
		assert.Check(t, is.Equal(code, exitUnreachable), args)
		assert.Check(t, is.Equal(out, ""), args)
		assert.Check(t, is.Equal(strings.Count(errOut, "\n"), 1), "not one line: %q", errOut)
		assert.Check(t, is.Contains(errOut, "cannot reach the cluster at "+server+" (from kubeconfig "+kc+")"))
		assert.Check(t, is.Contains(errOut, "; start a local cluster with: sandboxtest-setup local up"))
	}

	// Without --kubeconfig the loading rules' first file is named.
	out, errOut, code := cliWithEnv(t, []string{"KUBECONFIG=" + kc}, "deploy")
	assert.Check(t, is.Equal(code, exitUnreachable))
	assert.Check(t, is.Equal(out, ""))
	assert.Check(t, is.Contains(errOut, "(from kubeconfig "+kc+")"))
}

func TestDeployBadFlags(t *testing.T) {
	sandboxtestSetup(nil, "deploy", "--router-replicas", "0").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: "sandboxtest-setup: --router-replicas must be at least 1, got 0\n"})
	sandboxtestSetup(nil, "deploy", "--timeout", "soon").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: `invalid argument "soon" for "--timeout" flag`})
	sandboxtestSetup(nil, "deploy", "--timeout", "0").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: "to not wait, use --wait=false"})
	// The old --wait DURATION: --wait takes no value, the duration is a stray argument.
	sandboxtestSetup(nil, "deploy", "--wait", "5m").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: "--wait is a boolean, as in kubectl, with --timeout beside it; use --timeout 5m"})
	sandboxtestSetup(nil, "deploy", "--wait", "0").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: "use --wait=false"})
	sandboxtestSetup(nil, "deploy", "--wait=maybe").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: `invalid argument "maybe" for "--wait" flag`})
	// A stray argument is an error wherever it stands, not the end of the flags.
	sandboxtestSetup(nil, "deploy", "foo", "--namespace", "x").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: `deploy takes no arguments (got ["foo"])`})
}

func TestDeployHelpListsEveryFlag(t *testing.T) {
	res := sandboxtestSetup(nil, "deploy", "--help")
	res.Assert(t, icmd.Success)
	for _, want := range []string{
		"--kubeconfig string ", "$KUBECONFIG, then ~/.kube/config",
		"--context string ",
		"-n, --namespace string ", `then the kube context's namespace, then "default"`,
		"-o, --output format ", "json or yaml",
		"--templates strings ", "(default: the embedded templates only)",
		"--router-namespace string ", "tests then set SANDBOXTEST_ROUTER_NAMESPACE (default: --namespace)",
		"--router-image string ", `(default "registry.k8s.io/agent-sandbox/sandbox-router-go:v1.0.0")`,
		"--router-replicas int ", "router replicas (default 1)",
		"--pool-replicas int ", "(0: each claim cold-starts)",
		"--gateway string ", "(default: none)",
		"--gateway-class string ", "(default: sandboxtest-local on the local cluster, required elsewhere)",
		"--gateway-port int ", "(default: 8080 on sandboxtest-local, else 80)",
		"--wait ", "ready pools (default true)",
		"--timeout duration ", "how long --wait waits (default 2m0s)",
		"Exit codes:",
	} {
		assert.Check(t, is.Contains(res.Stdout(), want))
	}

	res = sandboxtestSetup(nil, "install-controller", "--help")
	res.Assert(t, icmd.Success)
	assert.Check(t, is.Contains(res.Stdout(), "--kubeconfig string"))
	assert.Check(t, is.Contains(res.Stdout(), "--version string"))
	assert.Check(t, is.Contains(res.Stdout(), `(default "`+localcluster.AgentSandboxVersion+`")`))
	assert.Check(t, !strings.Contains(res.Stdout(), "--namespace"), "install-controller has no namespace")

	res = sandboxtestSetup(nil, "--help")
	res.Assert(t, icmd.Success)
	assert.Check(t, is.Contains(res.Stdout(), "  deploy "))
	assert.Check(t, is.Contains(res.Stdout(), "  install-controller "))
}
