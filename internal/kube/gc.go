package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
)

// Ages GCOptions.OlderThan understands besides a plain duration.
const (
	// DefaultGCAge is what a zero OlderThan means: claims of a test run
	// still going are younger than this.
	DefaultGCAge = time.Hour
	// AnyAge makes GC take objects of any age.
	AnyAge time.Duration = -1
)

// GCOptions selects what GC sweeps. The zero value sweeps namespace
// "default" of sandboxtest's claims (and unused cold pools) older than an hour.
type GCOptions struct {
	// Namespace to sweep. Default "default". Ignored with AllNamespaces.
	Namespace string
	// AllNamespaces sweeps every namespace.
	AllNamespaces bool
	// OlderThan takes only objects whose creationTimestamp is at least this
	// long ago. Zero means DefaultGCAge (1h), so that a zero GCOptions never
	// sweeps a run still going; AnyAge (any negative value) takes every age.
	OlderThan time.Duration
	// RunID, when set, takes only that run's claims and cold pools (label
	// LabelRunID). Default: every run's.
	RunID string
	// DryRun deletes nothing: each deletion is a server-side dry run, so
	// permissions are still checked, and the report says "would delete".
	DryRun bool
	// Log receives one line per object as GC goes. Default: discard.
	Log io.Writer
}

// GCObject is one object GC deleted (or would delete).
type GCObject struct {
	Kind      string // "claim" or "cold pool"
	Namespace string
	Name      string
	RunID     string // its LabelRunID, if any
	Test      string // its LabelTest, if any
	Age       time.Duration
}

// String reads "claim default/x (run r1, test TestFoo, age 2h3m)".
func (o GCObject) String() string {
	var attrs []string
	if o.RunID != "" {
		attrs = append(attrs, "run "+o.RunID)
	}
	if o.Test != "" {
		attrs = append(attrs, "test "+o.Test)
	}
	attrs = append(attrs, "age "+FormatAge(o.Age))
	return fmt.Sprintf("%s %s/%s (%s)", o.Kind, o.Namespace, o.Name, strings.Join(attrs, ", "))
}

// GCReport is what GC did.
type GCReport struct {
	// Scope is what was swept: `namespace "default"` or "all namespaces",
	// followed by ", run R" when RunID was set.
	Scope string
	// OlderThan is the age threshold applied (AnyAge for any age).
	OlderThan time.Duration
	DryRun    bool
	// Claims and Pools were deleted (in a dry run: would be), in the order GC
	// went; an object already gone when GC reached it counts as deleted.
	Claims []GCObject
	Pools  []GCObject
	// YoungerClaims and YoungerPools count what matched but was spared for
	// being younger than OlderThan.
	YoungerClaims int
	YoungerPools  int
	// LeasedClaims counts claims spared because their lease is fresh
	// (LeaseFresh): a live process renews them, whatever their age.
	LeasedClaims int
	// PoolsInUse counts cold pools kept because a claim that stays references them.
	PoolsInUse int
	// Failed counts objects whose deletion failed; GC's error says why.
	Failed int
}

// Summary is one line: "deleted 2 claims and 1 cold pool in namespace
// "default" (kept: 3 younger than 1h, 1 cold pool in use)".
func (r *GCReport) Summary() string {
	verb := "deleted"
	if r.DryRun {
		verb = "would delete"
	}
	s := fmt.Sprintf("%s %s and %s in %s", verb, gcPlural(len(r.Claims), "claim"), gcPlural(len(r.Pools), "cold pool"), r.Scope)
	var kept []string
	if n := r.YoungerClaims + r.YoungerPools; n > 0 {
		kept = append(kept, fmt.Sprintf("%d younger than %s", n, FormatAge(r.OlderThan)))
	}
	if r.LeasedClaims > 0 {
		kept = append(kept, gcPlural(r.LeasedClaims, "claim")+" with a fresh lease")
	}
	if r.PoolsInUse > 0 {
		kept = append(kept, gcPlural(r.PoolsInUse, "cold pool")+" in use")
	}
	if len(kept) > 0 {
		s += " (kept: " + strings.Join(kept, ", ") + ")"
	}
	if r.Failed > 0 {
		s += fmt.Sprintf("; %d failed", r.Failed)
	}
	return s
}

func gcPlural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// FormatAge renders an age the way people say it: 45s, 3m20s, 2h3m, 4d7h.
func FormatAge(d time.Duration) string {
	if d < 0 {
		return "0s"
	}
	d = d.Round(time.Second)
	days, hours := int(d/(24*time.Hour)), int(d/time.Hour)%24
	mins, secs := int(d/time.Minute)%60, int(d/time.Second)%60
	switch {
	case days > 0 && hours > 0:
		return fmt.Sprintf("%dd%dh", days, hours)
	case days > 0:
		return fmt.Sprintf("%dd", days)
	case hours > 0 && mins > 0:
		return fmt.Sprintf("%dh%dm", hours, mins)
	case hours > 0:
		return fmt.Sprintf("%dh", hours)
	case mins > 0 && secs > 0:
		return fmt.Sprintf("%dm%ds", mins, secs)
	case mins > 0:
		return fmt.Sprintf("%dm", mins)
	default:
		return fmt.Sprintf("%ds", secs)
	}
}

// GC deletes what sandboxtest runs left behind: SandboxClaims labelled
// LabelCreatedBy=CreatedByValue (and LabelRunID=opts.RunID when set) at least
// opts.OlderThan old, with background propagation so their Sandbox and pod
// go too; then SandboxWarmPools labelled LabelColdPool=true (and the run, when
// set) that no claim left in their namespace references, when old enough.
// A claim whose lease is fresh (LeaseFresh: a live test process renews
// it) is spared whatever its age; once its process dies, the controller
// deletes it within the lease, or a later GC does.
//
// Each object is written to opts.Log as it goes. Failing to delete one
// object does not stop the others: the failures are joined into the
// returned error, next to a report of the rest. An object already gone is
// not a failure. The report is nil only when nothing could be listed.
func GC(ctx context.Context, cfg *rest.Config, opts GCOptions) (*GCReport, error) {
	client, err := extclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	g := &gcRun{api: client, server: cfg.Host, opts: opts, log: opts.Log}
	if g.log == nil {
		g.log = io.Discard
	}
	return g.run(ctx)
}

type gcRun struct {
	api    extclient.Interface
	server string
	opts   GCOptions
	log    io.Writer
	report *GCReport
	errs   []error
}

func (g *gcRun) run(ctx context.Context) (*GCReport, error) {
	ns := g.opts.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	scope := fmt.Sprintf("namespace %q", ns)
	if g.opts.AllNamespaces {
		ns, scope = metav1.NamespaceAll, "all namespaces"
	}
	if g.opts.RunID != "" {
		scope += ", run " + g.opts.RunID
	}
	olderThan := g.opts.OlderThan
	switch {
	case olderThan == 0:
		olderThan = DefaultGCAge
	case olderThan < 0:
		olderThan = AnyAge
	}
	g.report = &GCReport{Scope: scope, OlderThan: olderThan, DryRun: g.opts.DryRun}

	// Every claim, labelled or not: the ones that stay decide which pools stay.
	claims, err := g.api.ExtensionsV1beta1().SandboxClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, g.listError("SandboxClaims", ns, err)
	}
	poolSel := labels.Set{LabelColdPool: "true"}
	if g.opts.RunID != "" {
		poolSel[LabelRunID] = g.opts.RunID
	}
	pools, err := g.api.ExtensionsV1beta1().SandboxWarmPools(ns).List(ctx, metav1.ListOptions{LabelSelector: poolSel.String()})
	if err != nil {
		return nil, g.listError("SandboxWarmPools", ns, err)
	}
	now := time.Now()
	old := func(m *metav1.ObjectMeta) bool {
		return olderThan < 0 || now.Sub(m.CreationTimestamp.Time) >= olderThan
	}

	items := claims.Items
	sort.Slice(items, func(i, j int) bool { return gcKey(&items[i].ObjectMeta) < gcKey(&items[j].ObjectMeta) })
	inUse := map[string]bool{} // namespace/pool referenced by a claim that stays
	for i := range items {
		c := &items[i]
		if c.DeletionTimestamp != nil {
			continue // already going
		}
		stays := true
		switch {
		case !g.matches(c.Labels):
		case !old(&c.ObjectMeta):
			g.report.YoungerClaims++
		case LeaseFresh(c, now):
			g.report.LeasedClaims++ // its process lives: the claim goes when it is done
		default:
			obj := g.object("claim", &c.ObjectMeta, now)
			stays = !g.delete(ctx, obj, c.UID, func(ctx context.Context, o metav1.DeleteOptions) error {
				return g.api.ExtensionsV1beta1().SandboxClaims(c.Namespace).Delete(ctx, c.Name, o)
			})
		}
		if stays {
			inUse[c.Namespace+"/"+c.Spec.WarmPoolRef.Name] = true
		}
	}

	pitems := pools.Items
	sort.Slice(pitems, func(i, j int) bool { return gcKey(&pitems[i].ObjectMeta) < gcKey(&pitems[j].ObjectMeta) })
	for i := range pitems {
		p := &pitems[i]
		switch {
		case p.DeletionTimestamp != nil:
		case inUse[gcKey(&p.ObjectMeta)]:
			g.report.PoolsInUse++
		case !old(&p.ObjectMeta):
			g.report.YoungerPools++
		default:
			obj := g.object("cold pool", &p.ObjectMeta, now)
			g.delete(ctx, obj, p.UID, func(ctx context.Context, o metav1.DeleteOptions) error {
				return g.api.ExtensionsV1beta1().SandboxWarmPools(p.Namespace).Delete(ctx, p.Name, o)
			})
		}
	}
	return g.report, errors.Join(g.errs...)
}

func gcKey(m *metav1.ObjectMeta) string { return m.Namespace + "/" + m.Name }

// matches says whether a claim's labels make it sandboxtest's, of the run asked for.
func (g *gcRun) matches(l map[string]string) bool {
	return l[LabelCreatedBy] == CreatedByValue && (g.opts.RunID == "" || l[LabelRunID] == g.opts.RunID)
}

func (g *gcRun) object(kind string, m *metav1.ObjectMeta, now time.Time) GCObject {
	return GCObject{Kind: kind, Namespace: m.Namespace, Name: m.Name,
		RunID: m.Labels[LabelRunID], Test: m.Labels[LabelTest], Age: now.Sub(m.CreationTimestamp.Time)}
}

// delete deletes one object (the UID precondition leaves alone a namesake
// created since the list), logs it, records it, and says whether it is gone.
func (g *gcRun) delete(ctx context.Context, obj GCObject, uid types.UID, del func(context.Context, metav1.DeleteOptions) error) bool {
	bg := metav1.DeletePropagationBackground
	o := metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &uid}}
	verb := "deleted"
	if g.opts.DryRun {
		o.DryRun, verb = []string{metav1.DryRunAll}, "would delete"
	}
	err := del(ctx, o)
	switch {
	case err == nil:
		fmt.Fprintf(g.log, "%s %s\n", verb, obj)
	case apierrors.IsNotFound(err):
		fmt.Fprintf(g.log, "%s already gone\n", obj)
	case apierrors.IsConflict(err):
		fmt.Fprintf(g.log, "kept %s: replaced by a new one since it was listed\n", obj)
		return false
	default:
		fmt.Fprintf(g.log, "failed to delete %s: %v\n", obj, err)
		g.errs = append(g.errs, fmt.Errorf("deleting %s %s/%s: %w", obj.Kind, obj.Namespace, obj.Name, err))
		g.report.Failed++
		return false
	}
	if obj.Kind == "claim" {
		g.report.Claims = append(g.report.Claims, obj)
	} else {
		g.report.Pools = append(g.report.Pools, obj)
	}
	return true
}

// listError says what a failed list means and how to fix it.
func (g *gcRun) listError(resource, ns string, err error) error {
	where := fmt.Sprintf("namespace %q", ns)
	if ns == metav1.NamespaceAll {
		where = "all namespaces"
	}
	var status apierrors.APIStatus
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("gc: the cluster at %s does not serve %s (%s): install agent-sandbox with its extensions, or run: sandboxtest-setup local up",
			g.server, resource, extv1beta1.GroupVersion)
	case errors.As(err, &status):
		return fmt.Errorf("gc: listing %s in %s on %s: %w", resource, where, g.server, err)
	}
	// No answer from the server at all.
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return fmt.Errorf("gc: %w; start a local one with: sandboxtest-setup local up", &UnreachableError{Server: g.server, Err: err})
}
