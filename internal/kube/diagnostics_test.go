package kube_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

func clients(t *testing.T) *kube.Clients {
	t.Helper()
	c, err := kube.NewClients(cluster.RESTConfig)
	assert.NilError(t, err)
	return c
}

func timelineText(d *kube.Diagnostics) string {
	var b strings.Builder
	for _, e := range d.Timeline {
		b.WriteString(e.Time.Format(time.RFC3339) + " " + e.Object + " " + e.What + "\n")
	}
	return b.String()
}

func TestGatherReadySandbox(t *testing.T) {
	ns := namespace(t, "diag-")
	mustCreateTemplate(t, ns, "diag-python")
	mustCreatePool(t, coldPool(ns, "diag-python", "diag-python", "run"))
	c := clients(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waitSchedulable(t)
	cl, err := c.CreateClaim(ctx, kube.ClaimSpec{Namespace: ns, Pool: "diag-python", ShutdownTime: time.Now().Add(10 * time.Minute)})
	assert.NilError(t, err)
	ready, err := c.WaitReady(ctx, ns, cl.Name, nil)
	assert.NilError(t, err)

	d := c.Gather(ctx, kube.DiagnosticsRequest{Namespace: ns, Claim: cl.Name})
	assert.Assert(t, d.Claim != nil && d.Sandbox != nil && d.Pod != nil, "problems: %v", d.Problems)
	assert.Check(t, is.Equal(d.Sandbox.Name, ready.SandboxName))
	assert.Check(t, is.Equal(d.Pod.Name, ready.PodName))
	// No router in this namespace: said, not failed.
	assert.Check(t, is.DeepEqual(problemKeys(d.Problems), []string{kube.SectionRouterLog}))
	assert.Check(t, is.Contains(d.Problems[kube.SectionRouterLog], "no router pod (label app=sandbox-router) in namespace "+ns))

	tl := timelineText(d)
	for _, want := range []string{"claim " + cl.Name + " created", "claim " + cl.Name + " Ready=",
		"sandbox " + ready.SandboxName + " Ready=True", "pod " + ready.PodName + " Ready=True", "container python-runtime running"} {
		assert.Check(t, is.Contains(tl, want))
	}
	var reasons []string
	for _, e := range d.Events {
		reasons = append(reasons, e.Object+" "+e.Reason)
	}
	assert.Check(t, is.Contains(reasons, "pod/"+ready.PodName+" Scheduled"))
	assert.Check(t, is.Contains(reasons, "sandboxclaim/"+cl.Name+" SandboxProvisioned"))
	assert.Assert(t, is.Len(d.Logs, 1))
	assert.Check(t, is.Equal(d.Logs[0].Role, "sandbox"))
	assert.Check(t, d.Logs[0].Err)
	assert.Check(t, is.Contains(d.Logs[0].Text, "runtime server listening on http://"+ready.PodIP+":8888"))

	objs := d.Objects()
	assert.Check(t, is.Contains(string(objs["claim.yaml"]), "kind: SandboxClaim"))
	assert.Check(t, is.Contains(string(objs["claim.yaml"]), "apiVersion: extensions.agents.x-k8s.io/v1beta1"))
	assert.Check(t, is.Contains(string(objs["sandbox.yaml"]), "kind: Sandbox"))
	assert.Check(t, is.Contains(string(objs["pod.yaml"]), "kind: Pod"))
	assert.Check(t, !strings.Contains(string(objs["pod.yaml"]), "managedFields"))
}

// TestClaimOnMissingPoolFailsFast: a claim on a pool that does not exist
// fails at once with the controller's reason, and its diagnostics say
// there is no Sandbox.
func TestClaimOnMissingPoolFailsFast(t *testing.T) {
	ns := namespace(t, "diag-")
	c := clients(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := c.CreateClaim(ctx, kube.ClaimSpec{Namespace: ns, Pool: "no-such-pool", ShutdownTime: time.Now().Add(10 * time.Minute)})
	assert.NilError(t, err)
	_, err = c.WaitReady(ctx, ns, cl.Name, nil)
	assert.Assert(t, err != nil)
	assert.Check(t, kube.IsTerminal(err), "waited instead of failing: %v", err)
	assert.Check(t, !errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.Check(t, strings.Contains(err.Error(), "WarmPoolNotFound") || strings.Contains(err.Error(), "TemplateNotFound"), "%v", err)
	assert.Check(t, is.Contains(err.Error(), "no-such-pool"))

	d := c.Gather(context.Background(), kube.DiagnosticsRequest{Namespace: ns, Claim: cl.Name})
	assert.Check(t, d.Claim != nil)
	assert.Check(t, is.Equal(d.Problems[kube.SectionSandbox], "the claim has no Sandbox yet (its status.sandbox.name is empty)"))
	assert.Check(t, is.Contains(d.Problems[kube.SectionSandboxLg], "no pod"))
	assert.Check(t, is.Contains(timelineText(d), "Ready=False reason=WarmPoolNotFound"))
}

func TestGatherMissingClaim(t *testing.T) {
	ns := namespace(t, "diag-")
	d := clients(t).Gather(context.Background(), kube.DiagnosticsRequest{Namespace: ns, Claim: "gone"})
	assert.Check(t, is.Equal(d.Problems[kube.SectionClaim], "SandboxClaim "+ns+"/gone not found (deleted, or never created)"))
	assert.Check(t, is.Equal(d.Problems[kube.SectionSandbox], "the claim could not be read, so its Sandbox is unknown"))
	assert.Check(t, d.Claim == nil && d.Sandbox == nil && d.Pod == nil)
}

// TestGatherDoesNotHang: against an API server that never answers, each
// call gives up after CallTimeout and the rest is skipped, saying why.
func TestGatherDoesNotHang(t *testing.T) {
	stuck := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stuck:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(stuck)
	c, err := kube.NewClients(&rest.Config{Host: srv.URL})
	assert.NilError(t, err)
	d := c.Gather(context.Background(), kube.DiagnosticsRequest{Namespace: "default", Claim: "x", CallTimeout: 200 * time.Millisecond})
	assert.Check(t, is.Contains(d.Problems[kube.SectionClaim], "no answer within 200ms"))
	for _, s := range []string{kube.SectionSandbox, kube.SectionPod, kube.SectionEvents, kube.SectionSandboxLg, kube.SectionRouterLog} {
		assert.Check(t, is.Contains(d.Problems[s], "skipped: the API server did not answer"), s)
	}
}

func TestDescribeLeftovers(t *testing.T) {
	ns := namespace(t, "diag-")
	got := clients(t).DescribeLeftovers(context.Background(), ns, "nope", "nope", time.Second)
	assert.Check(t, is.Equal(got, "Sandbox gone; pod gone"))
}

// waitSchedulable waits until the node has lost the taints it starts with
// (not-ready), which WaitReady would take for an unschedulable pod.
func waitSchedulable(t *testing.T) {
	t.Helper()
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return poll.Continue("listing nodes: %v", err)
		}
		for _, n := range nodes.Items {
			for _, taint := range n.Spec.Taints {
				if taint.Effect == corev1.TaintEffectNoSchedule || taint.Effect == corev1.TaintEffectNoExecute {
					return poll.Continue("node %s has taint %s", n.Name, taint.ToString())
				}
			}
		}
		return poll.Success()
	}, poll.WithTimeout(time.Minute), poll.WithDelay(100*time.Millisecond))
}

func mustCreateTemplate(t *testing.T, ns, name string) {
	t.Helper()
	_, err := ext.ExtensionsV1beta1().SandboxTemplates(ns).Create(context.Background(), template(ns, name), metav1.CreateOptions{})
	assert.NilError(t, err)
}

func problemKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
