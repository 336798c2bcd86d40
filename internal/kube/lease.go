package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
)

// A claim is a lease: its shutdownTime is kept a little ahead of now by the
// process that uses it, so the controller deletes it soon after that
// process dies (SIGKILL, a crash, -timeout), however long the process was
// meant to run, and never while it lives.
//
// The annotations say who holds the lease and when it was last renewed;
// gc spares a claim whose lease is fresh (LeaseFresh).
const (
	// AnnotationLeaseHolder names the process renewing the claim ("host pid N").
	AnnotationLeaseHolder = "sandboxtest.io/lease-holder"
	// AnnotationLeaseRenewed is when it last renewed it (RFC 3339, UTC).
	AnnotationLeaseRenewed = "sandboxtest.io/lease-renewed"
	// AnnotationLeaseEvery is how often it renews it (a Go duration).
	AnnotationLeaseEvery = "sandboxtest.io/lease-every"
)

// Lease is how far ahead of now a claim's shutdownTime is kept and how
// often it is moved.
type Lease struct {
	// Duration: each renewal sets shutdownTime to now + Duration, so a
	// claim whose process died is deleted at most this long after its
	// last renewal. Default 2m.
	Duration time.Duration
	// Every is the time between renewals. Default Duration/4 (30s for the
	// default Duration): three renewals can fail before the claim expires.
	Every time.Duration
}

// DefaultLease is what a zero Lease means.
var DefaultLease = Lease{Duration: 2 * time.Minute, Every: 30 * time.Second}

func (l Lease) withDefaults() Lease {
	if l.Duration <= 0 {
		l.Duration = DefaultLease.Duration
	}
	if l.Every <= 0 {
		l.Every = l.Duration / 4
	}
	return l
}

// LeaseFresh reports whether a claim's lease is held by a live process, as
// far as the cluster can tell at now: it carries a renewal time, that
// renewal is less than two renewal periods old (at most one was missed),
// and its shutdownTime has not passed. A claim with no lease annotations
// (a kept sandbox, or one made by an older sandboxtest) is never fresh.
func LeaseFresh(c *extv1beta1.SandboxClaim, now time.Time) bool {
	renewed, err := time.Parse(time.RFC3339, c.Annotations[AnnotationLeaseRenewed])
	if err != nil {
		return false
	}
	every, err := time.ParseDuration(c.Annotations[AnnotationLeaseEvery])
	if err != nil || every <= 0 {
		return false
	}
	lc := c.Spec.Lifecycle
	return now.Before(renewed.Add(2*every)) && lc != nil && lc.ShutdownTime != nil && now.Before(lc.ShutdownTime.Time)
}

// LeaseRenewer renews the leases of the claims a process holds, from one
// goroutine that runs while it holds any. Its owner adds a claim when it
// creates it (LeaseSpec gives the claim's initial lease) and releases it
// before deleting or keeping it.
type LeaseRenewer struct {
	Clients *Clients
	// Holder goes to AnnotationLeaseHolder. Default "host pid N".
	Holder string
	// Logf receives renewals that failed. Default: discard.
	Logf func(format string, args ...any)

	mu     sync.Mutex
	claims map[types.NamespacedName]*heldLease
	wake   chan struct{} // a claim was added: the loop recomputes its next renewal
	active bool          // the loop runs
}

type heldLease struct {
	lease Lease
	next  time.Time
}

// LeaseSpec is what a claim about to be created carries for lease l: its
// shutdownTime and the lease annotations. Add starts renewing it.
func (r *LeaseRenewer) LeaseSpec(l Lease, now time.Time) (shutdown time.Time, annotations map[string]string) {
	l = l.withDefaults()
	return now.Add(l.Duration), r.annotations(l, now)
}

func (r *LeaseRenewer) annotations(l Lease, now time.Time) map[string]string {
	holder := r.Holder
	if holder == "" {
		host, _ := os.Hostname()
		holder = fmt.Sprintf("%s pid %d", host, os.Getpid())
	}
	return map[string]string{
		AnnotationLeaseHolder:  holder,
		AnnotationLeaseRenewed: now.UTC().Format(time.RFC3339),
		AnnotationLeaseEvery:   l.Every.String(),
	}
}

// Add renews ns/claim under lease l from now on, first one period from now.
func (r *LeaseRenewer) Add(ns, claim string, l Lease) {
	l = l.withDefaults()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.claims == nil {
		r.claims = map[types.NamespacedName]*heldLease{}
		r.wake = make(chan struct{}, 1)
	}
	r.claims[types.NamespacedName{Namespace: ns, Name: claim}] = &heldLease{lease: l, next: time.Now().Add(l.Every)}
	if !r.active {
		r.active = true
		go r.loop()
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Release stops renewing ns/claim; its shutdownTime stays as last set.
func (r *LeaseRenewer) Release(ns, claim string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.claims, types.NamespacedName{Namespace: ns, Name: claim})
}

// Held reports whether ns/claim is being renewed.
func (r *LeaseRenewer) Held(ns, claim string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.claims[types.NamespacedName{Namespace: ns, Name: claim}]
	return ok
}

// loop renews each claim when its time comes; it ends when none is held.
func (r *LeaseRenewer) loop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.mu.Lock()
		if len(r.claims) == 0 {
			r.active = false
			r.mu.Unlock()
			return
		}
		now := time.Now()
		var due []types.NamespacedName
		var leases []Lease
		next := now.Add(time.Hour)
		for k, h := range r.claims {
			if !h.next.After(now) {
				due = append(due, k)
				leases = append(leases, h.lease)
				h.next = now.Add(h.lease.Every)
			}
			if h.next.Before(next) {
				next = h.next
			}
		}
		r.mu.Unlock()
		for i, k := range due {
			r.renew(k, leases[i])
		}
		timer.Reset(time.Until(next))
		select {
		case <-timer.C:
		case <-r.wake:
			if !timer.Stop() {
				<-timer.C
			}
		}
	}
}

// renew moves one claim's shutdownTime to now + its lease. A claim that is
// gone is released; other failures are logged and retried next period.
func (r *LeaseRenewer) renew(k types.NamespacedName, l Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), l.Every)
	defer cancel()
	now := time.Now()
	patch := map[string]any{
		"metadata": map[string]any{"annotations": r.annotations(l, now)},
		"spec":     map[string]any{"lifecycle": map[string]any{"shutdownTime": now.Add(l.Duration).UTC().Format(time.RFC3339)}},
	}
	body, _ := json.Marshal(patch)
	_, err := r.Clients.Extensions.ExtensionsV1beta1().SandboxClaims(k.Namespace).Patch(ctx, k.Name, types.MergePatchType, body, metav1.PatchOptions{})
	switch {
	case err == nil:
	case apierrors.IsNotFound(err):
		r.Release(k.Namespace, k.Name)
	case r.Logf != nil:
		r.Logf("renewing the lease of claim %s/%s (its shutdownTime) failed: %v; retrying in %s", k.Namespace, k.Name, err, l.Every)
	}
}
