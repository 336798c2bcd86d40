package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
)

// TestDeployCommand runs deploy and install-controller against one local
// cluster (the cmd tests' TestMain starts none, so this test owns it).
func TestDeployCommand(t *testing.T) {
	ctx := context.Background()
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: t.TempDir(), Log: os.Stderr}, nil)
	assert.NilError(t, err)
	t.Cleanup(func() { c.Stop() })
	cs, err := kubernetes.NewForConfig(c.RESTConfig)
	assert.NilError(t, err)
	kc := c.Kubeconfig

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
		out, errOut, code := cli(t, "deploy", "--kubeconfig", kc, "--namespace", "cli", "--templates", file, "--wait", "0")
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
		assert.Check(t, is.Equal(code, 1))
		assert.Check(t, is.Equal(out, ""))
		assert.Check(t, is.Equal(errOut, "sandboxtest-setup: deploy: templates path "+missing+": no such file or directory\n"))
		_, err := cs.CoreV1().Namespaces().Get(ctx, "cli-bad", metav1.GetOptions{})
		assert.Check(t, apierrors.IsNotFound(err), "namespace cli-bad exists: %v", err)
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
		assert.Check(t, is.Equal(code, 1), args)
		assert.Check(t, is.Equal(out, ""), args)
		assert.Check(t, is.Equal(strings.Count(errOut, "\n"), 1), "not one line: %q", errOut)
		assert.Check(t, is.Contains(errOut, "cannot reach the cluster at "+server+" (from kubeconfig "+kc+")"))
		assert.Check(t, is.Contains(errOut, "; start a local cluster with: sandboxtest-setup local up"))
	}

	// Without --kubeconfig the loading rules' first file is named.
	out, errOut, code := cliWithEnv(t, []string{"KUBECONFIG=" + kc}, "deploy")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Equal(out, ""))
	assert.Check(t, is.Contains(errOut, "(from kubeconfig "+kc+")"))
}

func TestDeployBadFlags(t *testing.T) {
	_, errOut, code := cli(t, "deploy", "--router-replicas", "0")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Equal(errOut, "sandboxtest-setup: --router-replicas must be at least 1, got 0\n"))

	_, errOut, code = cli(t, "deploy", "--wait", "soon")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(errOut, `invalid value "soon" for flag -wait`))
}

func TestDeployHelpListsEveryFlag(t *testing.T) {
	_, errOut, code := cli(t, "deploy", "--help")
	assert.Check(t, is.Equal(code, 0))
	for _, want := range []string{
		"-kubeconfig string\n", "$KUBECONFIG, then ~/.kube/config",
		"-namespace string\n", `(default "default")`,
		"-templates value\n", "(default: the embedded templates only)",
		"-router-namespace string\n", "tests then set SANDBOXTEST_ROUTER_NAMESPACE (default: --namespace)",
		"-router-image string\n", `(default "registry.k8s.io/agent-sandbox/sandbox-router-go:v1.0.0")`,
		"-router-replicas int\n", "router replicas (default 1)",
		"-pool-replicas int\n", "(0: each claim cold-starts)",
		"-gateway string\n", "(default: none)",
		"-gateway-class string\n", "(default: sandboxtest-local on the local cluster, required elsewhere)",
		"-gateway-port int\n", "(default: 8080 on sandboxtest-local, else 80)",
		"-wait duration\n", "(0: don't wait) (default 2m0s)",
	} {
		assert.Check(t, is.Contains(errOut, want))
	}

	_, errOut, code = cli(t, "install-controller", "--help")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(errOut, "-kubeconfig string"))
	assert.Check(t, is.Contains(errOut, "-version string"))
	assert.Check(t, is.Contains(errOut, `(default "`+localcluster.AgentSandboxVersion+`")`))

	out, _, code := cli(t, "--help")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(out, "  deploy "))
	assert.Check(t, is.Contains(out, "  install-controller "))
}

// cliWithEnv is cli with more environment variables for the child.
func cliWithEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	exe, err := os.Executable()
	assert.NilError(t, err)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), cliEnv+"=1"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	}
	assert.NilError(t, err)
	return out.String(), errb.String(), 0
}
