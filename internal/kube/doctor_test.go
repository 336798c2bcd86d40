package kube_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	templates "github.com/agentsandbox/go-sandboxtest"
	"github.com/agentsandbox/go-sandboxtest/internal/deploy"
	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

func rowsByName(rows []kube.Check) map[string]kube.Check {
	m := map[string]kube.Check{}
	for _, r := range rows {
		m[r.Name] = r
	}
	return m
}

func TestDoctorBeforeAndAfterDeploy(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "doctor")
	opts := kube.DoctorOptions{Namespace: ns, Templates: []string{"python-sandbox-template"}, Gateway: "gw", Timeout: 20 * time.Second}

	before := rowsByName(kube.Doctor(ctx, cluster.RESTConfig, opts))
	for _, ok := range []string{"API reachable", "agent-sandbox CRDs", "cluster kind", "controller with extensions"} {
		assert.Check(t, before[ok].OK, "%s: %+v", ok, before[ok])
	}
	assert.Check(t, is.Contains(before["cluster kind"].Seen, "local"))
	router := before["sandbox-router"]
	assert.Check(t, !router.OK)
	assert.Check(t, is.Contains(router.Seen, "Deployment "+ns+"/sandbox-router not found"))
	assert.Check(t, is.Equal(router.Fix, "sandboxtest-setup deploy --namespace "+ns))
	tmpl := before["template python-sandbox-template"]
	assert.Check(t, !tmpl.OK)
	assert.Check(t, is.Contains(tmpl.Seen, "not found in namespace "+ns))
	assert.Check(t, is.Contains(tmpl.Fix, "sandboxtest-setup deploy"))
	assert.Check(t, !before["gateway "+ns+"/gw"].OK)

	_, err := deploy.Deploy(ctx, cluster.RESTConfig, deploy.Options{Namespace: ns, Templates: templates.FS, Gateway: "gw"})
	assert.NilError(t, err)
	var after []kube.Check
	// The Gateway is programmed shortly after the deploy returns.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		after = kube.Doctor(ctx, cluster.RESTConfig, opts)
		if g := rowsByName(after)["gateway "+ns+"/gw"]; g.OK || time.Now().After(deadline) {
			break
		}
	}
	for _, r := range after {
		assert.Check(t, r.OK, "%s: %s (fix: %s)", r.Name, r.Seen, r.Fix)
	}
	m := rowsByName(after)
	assert.Check(t, is.Contains(m["sandbox-router"].Seen, "sandbox-router-svc selects"))
	assert.Check(t, is.Contains(m["template python-sandbox-template"].Seen, "pool python-sandbox-template: 0/0 ready"))

	// Doctor leaves nothing behind: its throwaway template is gone.
	list, err := ext.ExtensionsV1beta1().SandboxTemplates(ns).List(ctx, metav1.ListOptions{})
	assert.NilError(t, err)
	for _, tpl := range list.Items {
		assert.Check(t, !strings.HasPrefix(tpl.Name, "sandboxtest-doctor-"), "left behind: %s", tpl.Name)
	}
}

func TestDoctorUnreachable(t *testing.T) {
	rows := kube.Doctor(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, kube.DoctorOptions{})
	assert.Assert(t, is.Len(rows, 1))
	assert.Check(t, !rows[0].OK)
	assert.Check(t, is.Contains(rows[0].Seen, "127.0.0.1:1"))
	assert.Check(t, is.Contains(rows[0].Fix, "sandboxtest-setup local up"))
}
