package main

import (
	"context"
	"encoding/json"
	"regexp"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/icmd"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentsandbox/go-sandboxtest/fixtures"
	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// brokenTemplate declares and probes port 8888, but its server listens on
// 7000 (on the local node a runtime listens on its first containerPort).
const brokenTemplate = `
apiVersion: extensions.agents.x-k8s.io/v1beta1
kind: SandboxTemplate
metadata:
  name: broken-port
spec:
  networkPolicy:
    ingress:
      - from: [{podSelector: {matchLabels: {app: sandbox-router}}}]
  podTemplate:
    spec:
      containers:
        - name: runtime
          image: example.com/python-runtime-sandbox:1
          ports:
            - {containerPort: 7000}
            - {name: runtime, containerPort: 8888}
          readinessProbe:
            httpGet: {path: /, port: runtime}
`

// TestValidateCommand runs validate against the shared local cluster for a
// template that works and one that does not.
func TestValidateCommand(t *testing.T) {
	ctx := context.Background()
	kcfg := localCluster(t).kubeconfig
	cfg, err := clientcmd.BuildConfigFromFlags("", kcfg)
	assert.NilError(t, err)
	_, err = fixtures.Deploy(ctx, cfg, fixtures.DeployOptions{Namespace: "v"})
	assert.NilError(t, err)
	ts, err := kube.DecodeTemplates("broken.yaml", []byte(brokenTemplate))
	assert.NilError(t, err)
	kc, err := kube.NewClients(cfg)
	assert.NilError(t, err)
	_, err = kc.Extensions.ExtensionsV1beta1().SandboxTemplates("v").Create(ctx, ts[0].SandboxTemplate, metav1.CreateOptions{})
	assert.NilError(t, err)

	t.Run("a working template passes", func(t *testing.T) {
		out, errOut, code := cli(t, "validate", "--kubeconfig", kcfg, "--namespace", "v", "--template", "python-sandbox-template")
		assert.Check(t, is.Equal(code, 0), "stdout:\n%s\nstderr:\n%s", out, errOut)
		assert.Check(t, is.Contains(out, "template python-sandbox-template in namespace v passes: 15 checks"))
		assert.Check(t, tableRow(out, "CHECK", "RESULT", "TIME", "DETAIL"), out)
		for _, check := range fixtures.ValidationChecks() {
			assert.Check(t, regexp.MustCompile(`(?m)^`+check+` +(PASS|WARN) `).MatchString(out), "%s:\n%s", check, out)
		}
	})

	t.Run("a broken template fails and says why", func(t *testing.T) {
		out, errOut, code := cli(t, "validate", "--kubeconfig", kcfg, "--namespace", "v", "--template", "broken-port", "--ready-budget", "4s")
		t.Logf("validate --template broken-port:\n%s%s", out, errOut)
		assert.Check(t, is.Equal(code, 1), "stdout:\n%s\nstderr:\n%s", out, errOut)
		assert.Check(t, is.Contains(out, "template broken-port in namespace v FAILS: 15 checks, 3 passed, 1 failed"), out)
		assert.Check(t, regexp.MustCompile(`(?m)^ready +FAIL +4\.\d+s +not Ready within 4s: the server listens on port 7000`).MatchString(out), out)
		assert.Check(t, is.Contains(out, "Make the server listen on 8888, or declare (containerPort) and probe (readinessProbe) port 7000 instead."), out)
		assert.Check(t, is.Contains(out, "network-policy   PASS"), out)
		assert.Check(t, is.Contains(errOut, "sandboxtest-setup: template broken-port failed 1 of 15 checks\n"), errOut)
	})

	t.Run("-o json", func(t *testing.T) {
		res := sandboxtestSetup(nil, "validate", "--kubeconfig", kcfg, "-n", "v", "--template", "nope", "-o", "json")
		res.Assert(t, icmd.Expected{ExitCode: exitFailed, Err: "template nope failed 1 of 15 checks"})
		var rep ValidationReport
		assert.NilError(t, json.Unmarshal([]byte(res.Stdout()), &rep), res.Stdout())
		assert.Check(t, is.Equal(rep.TypeMeta, typeMeta("ValidationReport")))
		assert.Check(t, is.Equal(rep.Template, "nope"))
		assert.Check(t, is.Equal(rep.Namespace, "v"))
		assert.Check(t, !rep.OK)
		assert.Check(t, is.Equal(rep.Error, ""))
		assert.Check(t, is.Len(rep.Checks, len(fixtures.ValidationChecks())))
		var failedChecks []ValidationCheck
		for _, c := range rep.Checks {
			if c.Status == "FAIL" {
				failedChecks = append(failedChecks, c)
			}
		}
		assert.Assert(t, is.Len(failedChecks, 1), "%+v", rep.Checks)
		assert.Check(t, is.Contains(failedChecks[0].Detail, `template "nope" not found in namespace "v"`))
	})

	t.Run("an unknown template", func(t *testing.T) {
		out, errOut, code := cli(t, "validate", "--kubeconfig", kcfg, "--namespace", "v", "--template", "nope")
		assert.Check(t, is.Equal(code, 1))
		assert.Check(t, is.Contains(out, `template "nope" not found in namespace "v" (templates there: [broken-port python-env-template python-sandbox-template])`), out)
		assert.Check(t, is.Contains(errOut, "failed 1 of 15 checks"), errOut)
	})
}

func TestValidateCommandUsage(t *testing.T) {
	sandboxtestSetup(nil, "validate").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: "--template is required"})
	sandboxtestSetup(nil, "validate", "python-sandbox-template").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: "validate takes no arguments"})

	res := sandboxtestSetup(nil, "validate", "--help")
	res.Assert(t, icmd.Success)
	for _, f := range []string{"--template", "-n, --namespace", "--kubeconfig", "--context", "--ready-budget", "--require-non-root", "-v, --verbose", "-o, --output", "(default 3m0s)"} {
		assert.Check(t, is.Contains(res.Stdout(), f))
	}
}
