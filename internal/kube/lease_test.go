package kube_test

import (
	"context"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

func TestLeaseFresh(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	leased := func(renewed time.Time, every string, shutdown time.Time) *extv1beta1.SandboxClaim {
		c := &extv1beta1.SandboxClaim{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			kube.AnnotationLeaseRenewed: renewed.Format(time.RFC3339), kube.AnnotationLeaseEvery: every,
		}}}
		c.Spec.Lifecycle = &extv1beta1.Lifecycle{ShutdownTime: &metav1.Time{Time: shutdown}}
		return c
	}
	for _, tc := range []struct {
		name  string
		claim *extv1beta1.SandboxClaim
		fresh bool
	}{
		{"just renewed", leased(now, "30s", now.Add(2*time.Minute)), true},
		{"one renewal missed", leased(now.Add(-45*time.Second), "30s", now.Add(75*time.Second)), true},
		{"two renewals missed", leased(now.Add(-61*time.Second), "30s", now.Add(59*time.Second)), false},
		{"shutdownTime passed", leased(now.Add(-5*time.Second), "30s", now.Add(-time.Second)), false},
		{"no lease annotations (kept, or older sandboxtest)", &extv1beta1.SandboxClaim{Spec: extv1beta1.SandboxClaimSpec{
			Lifecycle: &extv1beta1.Lifecycle{ShutdownTime: &metav1.Time{Time: now.Add(time.Hour)}}}}, false},
		{"bad period", leased(now, "often", now.Add(time.Minute)), false},
		{"no lifecycle", &extv1beta1.SandboxClaim{ObjectMeta: leased(now, "30s", now).ObjectMeta}, false},
	} {
		assert.Check(t, is.Equal(kube.LeaseFresh(tc.claim, now), tc.fresh), tc.name)
	}
}

// TestLeaseOutlivesItsDurationAndGCSparesIt: a claim held for several
// times its lease keeps its Ready sandbox, gc of any age spares it, and
// once released the controller deletes it within the lease.
func TestLeaseOutlivesItsDurationAndGCSparesIt(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "lease-")
	x := ext.ExtensionsV1beta1()
	_, err := x.SandboxTemplates(ns).Create(ctx, template(ns, "tmpl"), metav1.CreateOptions{})
	assert.NilError(t, err)
	mustCreatePool(t, coldPool(ns, "pool", "tmpl", "lease-run"))

	clients, err := kube.NewClients(cluster.RESTConfig)
	assert.NilError(t, err)
	lease := kube.Lease{Duration: 4 * time.Second, Every: time.Second}
	r := &kube.LeaseRenewer{Clients: clients, Logf: t.Logf}
	shutdown, ann := r.LeaseSpec(lease, time.Now())
	c, err := clients.CreateClaim(ctx, kube.ClaimSpec{Namespace: ns, Pool: "pool", Labels: ours("lease-run", t.Name()),
		Annotations: ann, ShutdownTime: shutdown})
	assert.NilError(t, err)
	r.Add(ns, c.Name, lease)
	t.Cleanup(func() { r.Release(ns, c.Name) })
	ready, err := clients.WaitReady(ctx, ns, c.Name, nil)
	assert.NilError(t, err)

	time.Sleep(3 * lease.Duration) // long past the shutdownTime it was created with
	got, err := x.SandboxClaims(ns).Get(ctx, c.Name, metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Check(t, got.Spec.Lifecycle.ShutdownTime.After(time.Now()), "shutdownTime %s not renewed", got.Spec.Lifecycle.ShutdownTime)
	assert.Check(t, got.Spec.Lifecycle.ShutdownTime.After(shutdown.Add(2*lease.Duration)))
	assert.Check(t, kube.LeaseFresh(got, time.Now()))
	assert.Check(t, got.Annotations[kube.AnnotationLeaseHolder] != "")
	assert.Check(t, claimReady(got), "conditions %+v", got.Status.Conditions)
	assert.Check(t, sandboxExists(t, ns, ready.SandboxName))

	rep, err := kube.GC(ctx, cluster.RESTConfig, kube.GCOptions{Namespace: ns, OlderThan: kube.AnyAge})
	assert.NilError(t, err)
	assert.Check(t, is.Len(rep.Claims, 0))
	assert.Check(t, is.Equal(rep.LeasedClaims, 1))
	assert.Check(t, is.Contains(rep.Summary(), "1 claim with a fresh lease"))
	assert.Check(t, claimExists(t, ns, c.Name), "gc deleted a claim with a fresh lease")

	r.Release(ns, c.Name)
	released := time.Now()
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if claimExists(t, ns, c.Name) {
			return poll.Continue("claim %s/%s still exists", ns, c.Name)
		}
		return poll.Success()
	}, poll.WithTimeout(lease.Duration+30*time.Second), poll.WithDelay(200*time.Millisecond))
	t.Logf("released claim deleted by the controller %s after its last renewal at the latest", time.Since(released).Round(100*time.Millisecond))
}
