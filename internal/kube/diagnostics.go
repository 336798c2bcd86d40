package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
	"sigs.k8s.io/yaml"
)

// Defaults of DiagnosticsRequest.
const (
	DefaultCallTimeout  = 5 * time.Second
	DefaultLogTailLines = 5000
	DefaultLogLimit     = 4 << 20
	maxRouterPods       = 2
	maxEvents           = 500
)

// DiagnosticsRequest names the sandbox to gather diagnostics about. Only
// Namespace and Claim are required: the rest is found from the objects.
type DiagnosticsRequest struct {
	Namespace string
	Claim     string
	Sandbox   string // "" means the claim's status.sandbox.name
	Pod       string // "" means the Sandbox's pod-name annotation, else the Sandbox's name

	// RouterNamespace is where the router pods run ("" means Namespace);
	// RouterPod the one to read first (the tunnel's), if known. Pods
	// labelled app=sandbox-router are read, at most two.
	RouterNamespace string
	RouterPod       string

	// CallTimeout bounds each API call (default 5s): gathering never hangs.
	CallTimeout time.Duration
	// LogTailLines and LogLimitBytes bound each log read (defaults 5000
	// lines, 4 MiB).
	LogTailLines  int64
	LogLimitBytes int64
}

// Diagnostics is what could be gathered about one sandbox. A section that
// could not be gathered has its reason in Problems, keyed by section
// (SectionClaim …).
type Diagnostics struct {
	Claim    *extv1beta1.SandboxClaim
	Sandbox  *sandboxv1beta1.Sandbox
	Pod      *corev1.Pod
	Timeline []TimelineEntry // conditions and container states, by time
	Events   []EventEntry    // events of the claim, the Sandbox and the pod, by time
	Logs     []PodLog        // the sandbox pod's containers, then the router pods'
	Problems map[string]string
	Took     time.Duration
}

// Sections of a Diagnostics, as keys of Problems.
const (
	SectionClaim     = "claim"
	SectionSandbox   = "sandbox"
	SectionPod       = "pod"
	SectionEvents    = "events"
	SectionSandboxLg = "sandbox log"
	SectionRouterLog = "router log"
)

// TimelineEntry is one dated change of an object.
type TimelineEntry struct {
	Time   time.Time
	Object string // "claim x", "sandbox x", "pod x"
	What   string // "created", "Ready=False reason=…: message", "container c running"
}

// EventEntry is one Kubernetes event, flattened.
type EventEntry struct {
	First, Last time.Time
	Count       int32
	Object      string // kind/name
	Type        string // Normal or Warning
	Reason      string
	Message     string
	Source      string
}

// PodLog is the log of one container.
type PodLog struct {
	Role      string // "sandbox" or "router"
	Pod       string
	Container string
	Text      string
	Err       error // why it could not be read
}

// Objects returns the gathered objects as YAML, by file name (claim.yaml,
// sandbox.yaml, pod.yaml), without managedFields.
func (d *Diagnostics) Objects() map[string][]byte {
	out := map[string][]byte{}
	add := func(name string, obj any) {
		data, err := yaml.Marshal(obj)
		if err != nil {
			data = []byte("# cannot marshal: " + err.Error() + "\n")
		}
		out[name] = data
	}
	if d.Claim != nil {
		c := d.Claim.DeepCopy()
		c.ManagedFields = nil
		c.APIVersion, c.Kind = extv1beta1.GroupVersion.String(), "SandboxClaim"
		add("claim.yaml", c)
	}
	if d.Sandbox != nil {
		s := d.Sandbox.DeepCopy()
		s.ManagedFields = nil
		s.APIVersion, s.Kind = sandboxv1beta1.GroupVersion.String(), "Sandbox"
		add("sandbox.yaml", s)
	}
	if d.Pod != nil {
		p := d.Pod.DeepCopy()
		p.ManagedFields = nil
		p.APIVersion, p.Kind = "v1", "Pod"
		add("pod.yaml", p)
	}
	return out
}

// Gather reads the claim, its Sandbox and pod, their events, the pod's log
// and the router's, each call bounded by CallTimeout, so the whole takes at
// most a few CallTimeouts even when the API server does not answer. It
// never fails: what could not be read is said in Problems.
func (c *Clients) Gather(ctx context.Context, req DiagnosticsRequest) *Diagnostics {
	start := time.Now()
	if req.CallTimeout <= 0 {
		req.CallTimeout = DefaultCallTimeout
	}
	if req.LogTailLines <= 0 {
		req.LogTailLines = DefaultLogTailLines
	}
	if req.LogLimitBytes <= 0 {
		req.LogLimitBytes = DefaultLogLimit
	}
	if req.RouterNamespace == "" {
		req.RouterNamespace = req.Namespace
	}
	g := &gatherer{c: c, req: req, d: &Diagnostics{Problems: map[string]string{}}}
	g.objects(ctx)
	if g.down == "" {
		var wg sync.WaitGroup
		wg.Go(func() { g.events(ctx) })
		wg.Go(func() { g.sandboxLogs(ctx) })
		wg.Go(func() { g.routerLogs(ctx) })
		wg.Wait()
	} else {
		for _, s := range []string{SectionEvents, SectionSandboxLg, SectionRouterLog} {
			g.problem(s, g.down)
		}
	}
	g.d.Timeline = timeline(g.d)
	sort.SliceStable(g.d.Logs, func(i, j int) bool { return g.d.Logs[i].Role == "sandbox" && g.d.Logs[j].Role != "sandbox" })
	g.d.Took = time.Since(start)
	return g.d
}

type gatherer struct {
	c    *Clients
	req  DiagnosticsRequest
	mu   sync.Mutex
	d    *Diagnostics
	down string // set when the API server does not answer: the rest is skipped
}

func (g *gatherer) problem(section, why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.d.Problems[section] = why
}

// call runs f with a context bounded by CallTimeout.
func (g *gatherer) call(ctx context.Context, f func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, g.req.CallTimeout)
	defer cancel()
	err := f(cctx)
	if err != nil && cctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("no answer within %s (%w)", g.req.CallTimeout, err)
	}
	return err
}

// why words an error reading an object for the report.
func (g *gatherer) why(kind, ns, name string, err error) string {
	if apierrors.IsNotFound(err) {
		return fmt.Sprintf("%s %s/%s not found (deleted, or never created)", kind, ns, name)
	}
	return fmt.Sprintf("reading %s %s/%s: %v", kind, ns, name, err)
}

// unanswered reports whether err means the API server is not answering
// (rather than answering no).
func unanswered(err error) bool {
	if err == nil {
		return false
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) || strings.Contains(err.Error(), "connection refused")
}

func (g *gatherer) objects(ctx context.Context) {
	ns, r := g.req.Namespace, g.req
	err := g.call(ctx, func(ctx context.Context) error {
		cl, err := g.c.Extensions.ExtensionsV1beta1().SandboxClaims(ns).Get(ctx, r.Claim, metav1.GetOptions{})
		if err == nil {
			g.d.Claim = cl
		}
		return err
	})
	if err != nil {
		g.problem(SectionClaim, g.why("SandboxClaim", ns, r.Claim, err))
		if unanswered(err) {
			g.down = "skipped: the API server did not answer (" + err.Error() + ")"
			g.problem(SectionSandbox, g.down)
			g.problem(SectionPod, g.down)
			return
		}
	}
	sbName := r.Sandbox
	if sbName == "" && g.d.Claim != nil {
		sbName = g.d.Claim.Status.SandboxStatus.Name
	}
	if sbName == "" {
		why := "the claim has no Sandbox yet (its status.sandbox.name is empty)"
		if g.d.Claim == nil {
			why = "the claim could not be read, so its Sandbox is unknown"
		}
		g.problem(SectionSandbox, why)
		g.problem(SectionPod, why)
		return
	}
	err = g.call(ctx, func(ctx context.Context) error {
		sb, err := g.c.Sandboxes.AgentsV1beta1().Sandboxes(ns).Get(ctx, sbName, metav1.GetOptions{})
		if err == nil {
			g.d.Sandbox = sb
		}
		return err
	})
	if err != nil {
		g.problem(SectionSandbox, g.why("Sandbox", ns, sbName, err))
	}
	podName := r.Pod
	if g.d.Sandbox != nil {
		if pn := g.d.Sandbox.Annotations[sandboxv1beta1.SandboxPodNameAnnotation]; pn != "" {
			podName = pn
		}
	}
	if podName == "" {
		podName = sbName
	}
	err = g.call(ctx, func(ctx context.Context) error {
		p, err := g.c.Core.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
		if err == nil {
			g.d.Pod = p
		}
		return err
	})
	if err != nil {
		g.problem(SectionPod, g.why("pod", ns, podName, err))
	}
}

// events lists the events of the claim, the Sandbox and the pod.
func (g *gatherer) events(ctx context.Context) {
	ns := g.req.Namespace
	names := []string{g.req.Claim}
	if g.d.Sandbox != nil {
		names = append(names, g.d.Sandbox.Name)
	} else if g.req.Sandbox != "" {
		names = append(names, g.req.Sandbox)
	}
	if g.d.Pod != nil {
		names = append(names, g.d.Pod.Name)
	}
	seen := map[string]bool{}
	var out []EventEntry
	var problems []string
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		err := g.call(ctx, func(ctx context.Context) error {
			list, err := g.c.Core.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
				FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(), Limit: maxEvents,
			})
			if err != nil {
				return err
			}
			for _, e := range list.Items {
				out = append(out, eventEntry(e))
			}
			return nil
		})
		if err != nil {
			problems = append(problems, fmt.Sprintf("listing events of %s: %v", name, err))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Last.Before(out[j].Last) })
	g.mu.Lock()
	g.d.Events = out
	g.mu.Unlock()
	if len(problems) > 0 {
		g.problem(SectionEvents, strings.Join(problems, "; "))
	}
}

func eventEntry(e corev1.Event) EventEntry {
	first, last := e.FirstTimestamp.Time, e.LastTimestamp.Time
	if !e.EventTime.IsZero() {
		if first.IsZero() {
			first = e.EventTime.Time
		}
		if last.IsZero() || e.EventTime.After(last) {
			last = e.EventTime.Time
		}
	}
	if e.Series != nil && e.Series.LastObservedTime.After(last) {
		last = e.Series.LastObservedTime.Time
	}
	if first.IsZero() {
		first = e.CreationTimestamp.Time
	}
	if last.IsZero() {
		last = first
	}
	count := e.Count
	if e.Series != nil && e.Series.Count > count {
		count = e.Series.Count
	}
	src := e.Source.Component
	if src == "" {
		src = e.ReportingController
	}
	return EventEntry{First: first, Last: last, Count: max(count, 1),
		Object: strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name,
		Type:   e.Type, Reason: e.Reason, Message: strings.TrimSpace(e.Message), Source: src}
}

func (g *gatherer) sandboxLogs(ctx context.Context) {
	p := g.d.Pod
	if p == nil {
		if why, ok := g.d.Problems[SectionPod]; ok {
			g.problem(SectionSandboxLg, "no pod: "+why)
		} else {
			g.problem(SectionSandboxLg, "no pod")
		}
		return
	}
	for _, c := range p.Spec.Containers {
		g.readLog(ctx, "sandbox", p.Namespace, p.Name, c.Name)
	}
}

func (g *gatherer) routerLogs(ctx context.Context) {
	ns := g.req.RouterNamespace
	var pods []corev1.Pod
	err := g.call(ctx, func(ctx context.Context) error {
		list, err := g.c.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: RouterAppLabel + "=" + RouterAppValue})
		if err == nil {
			pods = list.Items
		}
		return err
	})
	if err != nil {
		g.problem(SectionRouterLog, fmt.Sprintf("listing router pods (%s=%s) in %s: %v", RouterAppLabel, RouterAppValue, ns, err))
		return
	}
	if len(pods) == 0 {
		g.problem(SectionRouterLog, fmt.Sprintf("no router pod (label %s=%s) in namespace %s: the connection does not go through a router there", RouterAppLabel, RouterAppValue, ns))
		return
	}
	sort.SliceStable(pods, func(i, j int) bool {
		if (pods[i].Name == g.req.RouterPod) != (pods[j].Name == g.req.RouterPod) {
			return pods[i].Name == g.req.RouterPod
		}
		ri, rj := pods[i].Status.Phase == corev1.PodRunning, pods[j].Status.Phase == corev1.PodRunning
		if ri != rj {
			return ri
		}
		return pods[i].Name < pods[j].Name
	})
	for i := range pods[:min(len(pods), maxRouterPods)] {
		p := &pods[i]
		if len(p.Spec.Containers) == 0 {
			continue
		}
		g.readLog(ctx, "router", p.Namespace, p.Name, p.Spec.Containers[0].Name)
	}
}

func (g *gatherer) readLog(ctx context.Context, role, ns, pod, container string) {
	l := PodLog{Role: role, Pod: pod, Container: container}
	l.Err = g.call(ctx, func(ctx context.Context) error {
		rc, err := g.c.Core.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{
			Container: container, TailLines: &g.req.LogTailLines, LimitBytes: &g.req.LogLimitBytes,
		}).Stream(ctx)
		if err != nil {
			return err
		}
		defer rc.Close()
		var b bytes.Buffer
		_, err = io.Copy(&b, io.LimitReader(rc, g.req.LogLimitBytes))
		l.Text = b.String()
		return err
	})
	if l.Err != nil {
		l.Err = fmt.Errorf("reading the log of %s/%s container %s: %w", ns, pod, container, l.Err)
	}
	g.mu.Lock()
	g.d.Logs = append(g.d.Logs, l)
	g.mu.Unlock()
}

// timeline orders the creation, conditions and container states of the
// claim, the Sandbox and the pod.
func timeline(d *Diagnostics) []TimelineEntry {
	var out []TimelineEntry
	add := func(t time.Time, obj, what string) {
		if !t.IsZero() {
			out = append(out, TimelineEntry{Time: t, Object: obj, What: what})
		}
	}
	meta := func(obj string, m metav1.ObjectMeta) {
		add(m.CreationTimestamp.Time, obj, "created")
		if m.DeletionTimestamp != nil {
			add(m.DeletionTimestamp.Time, obj, "deletion requested")
		}
	}
	conds := func(obj string, cs []metav1.Condition) {
		for _, c := range cs {
			add(c.LastTransitionTime.Time, obj, condition(string(c.Type), string(c.Status), c.Reason, c.Message))
		}
	}
	if c := d.Claim; c != nil {
		obj := "claim " + c.Name
		meta(obj, c.ObjectMeta)
		conds(obj, c.Status.Conditions)
	}
	if s := d.Sandbox; s != nil {
		obj := "sandbox " + s.Name
		meta(obj, s.ObjectMeta)
		conds(obj, s.Status.Conditions)
	}
	if p := d.Pod; p != nil {
		obj := "pod " + p.Name
		meta(obj, p.ObjectMeta)
		for _, c := range p.Status.Conditions {
			add(c.LastTransitionTime.Time, obj, condition(string(c.Type), string(c.Status), c.Reason, c.Message))
		}
		if p.Status.StartTime != nil {
			add(p.Status.StartTime.Time, obj, "started on node "+p.Spec.NodeName)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if r := cs.State.Running; r != nil {
				add(r.StartedAt.Time, obj, "container "+cs.Name+" running")
			}
			if t := cs.State.Terminated; t != nil {
				add(t.StartedAt.Time, obj, "container "+cs.Name+" started")
				add(t.FinishedAt.Time, obj, fmt.Sprintf("container %s terminated: exit %d%s", cs.Name, t.ExitCode, reasonMessage(t.Reason, t.Message)))
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				add(t.FinishedAt.Time, obj, fmt.Sprintf("container %s terminated before (restart %d): exit %d%s", cs.Name, cs.RestartCount, t.ExitCode, reasonMessage(t.Reason, t.Message)))
			}
		}
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			// The phase itself has no time; the latest condition's is the closest.
			var at time.Time
			for _, c := range p.Status.Conditions {
				if c.LastTransitionTime.After(at) {
					at = c.LastTransitionTime.Time
				}
			}
			add(at, obj, "phase "+string(p.Status.Phase)+reasonMessage(p.Status.Reason, p.Status.Message))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

func condition(typ, status, reason, msg string) string {
	return typ + "=" + status + reasonMessage(reason, msg)
}

func reasonMessage(reason, msg string) string {
	s := ""
	if reason != "" {
		s += " reason=" + reason
	}
	if msg = strings.TrimSpace(msg); msg != "" {
		s += ": " + msg
	}
	return s
}

// DescribeLeftovers says, in one line, what is left of a claim's Sandbox
// and pod and why they may not go away (finalizers, phase), for a cleanup
// that timed out. Each read is bounded by timeout.
func (c *Clients) DescribeLeftovers(ctx context.Context, ns, sandbox, pod string, timeout time.Duration) string {
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	var parts []string
	describe := func(kind string, get func(context.Context) (metav1.Object, string, error)) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		o, extra, err := get(cctx)
		switch {
		case apierrors.IsNotFound(err):
			parts = append(parts, kind+" gone")
		case err != nil:
			parts = append(parts, fmt.Sprintf("%s unknown (%v)", kind, err))
		default:
			s := kind + " " + o.GetName() + " still there"
			if dt := o.GetDeletionTimestamp(); dt != nil {
				s += fmt.Sprintf(", deletion requested %s ago", time.Since(dt.Time).Round(time.Second))
			} else {
				s += ", not being deleted"
			}
			if f := o.GetFinalizers(); len(f) > 0 {
				s += fmt.Sprintf(", finalizers %v", f)
			}
			parts = append(parts, s+extra)
		}
	}
	if sandbox != "" {
		describe("Sandbox", func(ctx context.Context) (metav1.Object, string, error) {
			s, err := c.Sandboxes.AgentsV1beta1().Sandboxes(ns).Get(ctx, sandbox, metav1.GetOptions{})
			if err != nil {
				return nil, "", err
			}
			return s, "", nil
		})
	}
	if pod != "" {
		describe("pod", func(ctx context.Context) (metav1.Object, string, error) {
			p, err := c.Core.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
			if err != nil {
				return nil, "", err
			}
			return p, ", " + PodState(p), nil
		})
	}
	return strings.Join(parts, "; ")
}
