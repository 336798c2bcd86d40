package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	asclient "sigs.k8s.io/agent-sandbox/clients/k8s/clientset/versioned"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
)

// Clients are the typed clients the sandbox lifecycle uses.
type Clients struct {
	Core       kubernetes.Interface
	Sandboxes  asclient.Interface
	Extensions extclient.Interface
}

// NewClients builds the typed clients from cfg. Unless cfg sets its own,
// the client-side rate limit is raised from client-go's 5 QPS: a suite of
// parallel tests makes several calls per sandbox, and throttling alone made
// each New take 0.5 s.
func NewClients(cfg *rest.Config) (*Clients, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		cfg.QPS, cfg.Burst = 100, 200
	}
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	sb, err := asclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ext, err := extclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Clients{Core: core, Sandboxes: sb, Extensions: ext}, nil
}

// Sentinels for errors callers match with errors.Is; sandboxtest exports them.
var (
	// ErrTemplateNotFound: the SandboxTemplate a test asked for does not exist.
	ErrTemplateNotFound = errors.New("template not found")
	// ErrRouterNotFound: the sandbox-router Service is not where it was looked for.
	ErrRouterNotFound = errors.New("router not found")
)

// TemplateNotFoundError says which template is missing and which exist.
// It matches ErrTemplateNotFound.
type TemplateNotFoundError struct {
	Namespace, Template string
	Available           []string
}

func (e *TemplateNotFoundError) Is(target error) bool { return target == ErrTemplateNotFound }

// RouterNotFound is an error worded msg that matches ErrRouterNotFound.
func RouterNotFound(msg string) error { return &routerNotFound{msg} }

type routerNotFound struct{ msg string }

func (e *routerNotFound) Error() string { return e.msg }
func (e *routerNotFound) Unwrap() error { return ErrRouterNotFound }

func (e *TemplateNotFoundError) Error() string {
	return fmt.Sprintf("template %q not found in namespace %q (templates there: [%s]); run: sandboxtest-setup deploy --namespace %s",
		e.Template, e.Namespace, strings.Join(e.Available, " "), e.Namespace)
}

// Pool is the warm pool a template resolved to.
type Pool struct {
	Name    string
	Port    int32 // where the template's server listens (ServerPort); 0 if it declares no port
	Ready   int32 // ready replicas when resolved; > 0 means a warm start is likely
	Created bool  // sandboxtest created it, cold, on demand
}

// ResolvePool finds the SandboxWarmPool that serves template in ns,
// preferring one with ready replicas; with none it creates a cold pool
// (replicas 0) labelled as sandboxtest's. A missing template is a
// *TemplateNotFoundError listing the templates that do exist.
func (c *Clients) ResolvePool(ctx context.Context, ns, template string) (Pool, error) {
	api := c.Extensions.ExtensionsV1beta1()
	// Both reads at once: this is on every New's path.
	var pools *extv1beta1.SandboxWarmPoolList
	var poolsErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		pools, poolsErr = api.SandboxWarmPools(ns).List(ctx, metav1.ListOptions{})
	}()
	tmpl, tmplErr := api.SandboxTemplates(ns).Get(ctx, template, metav1.GetOptions{})
	<-done
	if apierrors.IsNotFound(tmplErr) {
		return Pool{}, c.templateNotFound(ctx, ns, template)
	} else if tmplErr != nil {
		return Pool{}, fmt.Errorf("reading SandboxTemplate %s/%s: %w", ns, template, tmplErr)
	}
	if poolsErr != nil {
		return Pool{}, fmt.Errorf("listing SandboxWarmPools in %s: %w", ns, poolsErr)
	}
	var best *extv1beta1.SandboxWarmPool
	for i := range pools.Items {
		p := &pools.Items[i]
		if p.Spec.TemplateRef.Name != template || p.DeletionTimestamp != nil {
			continue
		}
		if best == nil || p.Status.ReadyReplicas > best.Status.ReadyReplicas {
			best = p
		}
	}
	_, p, _ := ServerPort(&tmpl.Spec.PodTemplate.Spec)
	port := p.ContainerPort
	if best != nil {
		return Pool{Name: best.Name, Ready: best.Status.ReadyReplicas, Port: port}, nil
	}
	pool := &extv1beta1.SandboxWarmPool{
		ObjectMeta: metav1.ObjectMeta{
			Name: template, Namespace: ns,
			Labels: map[string]string{LabelCreatedBy: CreatedByValue, LabelColdPool: "true", LabelManagedBy: ManagedByValue},
		},
		Spec: extv1beta1.SandboxWarmPoolSpec{Replicas: new(int32), TemplateRef: extv1beta1.SandboxTemplateRef{Name: template}},
	}
	if _, err := api.SandboxWarmPools(ns).Create(ctx, pool, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return Pool{}, fmt.Errorf("creating cold pool %s/%s for template %s: %w", ns, template, template, err)
	}
	return Pool{Name: template, Created: true, Port: port}, nil
}

func (c *Clients) templateNotFound(ctx context.Context, ns, template string) error {
	e := &TemplateNotFoundError{Namespace: ns, Template: template}
	if list, err := c.Extensions.ExtensionsV1beta1().SandboxTemplates(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, t := range list.Items {
			e.Available = append(e.Available, t.Name)
		}
		sort.Strings(e.Available)
	}
	return e
}

// ClaimSpec describes the claim a test makes.
type ClaimSpec struct {
	Namespace, Pool string
	Labels          map[string]string // run id, test name, created-by
	Annotations     map[string]string // trace context and the like
	ShutdownTime    time.Time         // the controller deletes the claim then, even if the test binary died

	// PodLabels and PodAnnotations go to spec.additionalPodMetadata: the
	// controller adds them to the sandbox's pod. It accepts only labels
	// under its allowed domains (default sandbox.users.io) and no
	// annotation under kubernetes.io, k8s.io or agents.x-k8s.io; anything
	// else ends the claim with reason InvalidMetadata.
	PodLabels, PodAnnotations map[string]string
	// VolumeClaimTemplates go to spec.volumeClaimTemplates: a PVC per
	// template, named <template>-<sandbox>, as the pod's volume <template>.
	// The SandboxTemplate must allow them (volumeClaimTemplatesPolicy
	// Allowed or Overrides), else the claim ends with reason
	// VolumeClaimTemplatesError. They force a cold start.
	VolumeClaimTemplates []sandboxv1beta1.PersistentVolumeClaimTemplate
}

// CreateClaim creates a SandboxClaim with a generated name and shutdownPolicy Delete.
func (c *Clients) CreateClaim(ctx context.Context, s ClaimSpec) (*extv1beta1.SandboxClaim, error) {
	claim := &extv1beta1.SandboxClaim{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "sandboxtest-", Namespace: s.Namespace, Labels: s.Labels, Annotations: s.Annotations},
		Spec: extv1beta1.SandboxClaimSpec{
			WarmPoolRef: extv1beta1.SandboxWarmPoolRef{Name: s.Pool},
			Lifecycle: &extv1beta1.Lifecycle{
				ShutdownTime:   &metav1.Time{Time: s.ShutdownTime},
				ShutdownPolicy: extv1beta1.ShutdownPolicyDelete,
			},
			AdditionalPodMetadata: sandboxv1beta1.PodMetadata{Labels: s.PodLabels, Annotations: s.PodAnnotations},
			VolumeClaimTemplates:  s.VolumeClaimTemplates,
		},
	}
	out, err := c.Extensions.ExtensionsV1beta1().SandboxClaims(s.Namespace).Create(ctx, claim, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating SandboxClaim in %s for pool %s: %w", s.Namespace, s.Pool, err)
	}
	return out, nil
}

// ExtendShutdown moves a claim's shutdownTime to at and removes its lease
// annotations: it is used to keep a sandbox for debugging, after its
// process has released the lease, and gc may then sweep it like any other.
func (c *Clients) ExtendShutdown(ctx context.Context, ns, claim string, at time.Time) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:null,%q:null,%q:null}},"spec":{"lifecycle":{"shutdownTime":%q}}}`,
		AnnotationLeaseHolder, AnnotationLeaseRenewed, AnnotationLeaseEvery, at.UTC().Format(time.RFC3339))
	_, err := c.Extensions.ExtensionsV1beta1().SandboxClaims(ns).Patch(ctx, claim, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
	return err
}

// ReadySandbox is where a claim's sandbox runs.
type ReadySandbox struct {
	SandboxName, PodName, PodIP, NodeName string
	Warm                                  bool // adopted from the pool rather than created cold
}

// TerminalError is a failure that waiting longer cannot fix.
type TerminalError struct{ Reason, Message string }

func (e *TerminalError) Error() string { return e.Reason + ": " + e.Message }

// TerminalReasons are the Ready=False reasons of a claim (and of its
// Sandbox, for SandboxExpired) that waiting cannot fix, from the v0.5.6
// controller's computeReadyCondition. Others (SandboxNotReady,
// DependenciesNotReady, AdoptionConflict, SandboxCreatePending,
// ReconcilerError, ...) pass.
var TerminalReasons = []string{
	"WarmPoolNotFound",          // the claim's warmPoolRef names no pool
	"TemplateNotFound",          // the pool's template is missing
	"InvalidMetadata",           // additionalPodMetadata refused (label domain, reserved annotation)
	"EnvVarsInjectionRejected",  // env the template does not allow
	"VolumeClaimTemplatesError", // volumeClaimTemplates the template does not allow, or invalid
	"ClaimExpired",              // the claim's shutdownTime passed
	"SandboxExpired",            // the Sandbox's shutdownTime passed
}

func terminalReason(reason string) bool {
	for _, r := range TerminalReasons {
		if r == reason {
			return true
		}
	}
	return false
}

// WaitReady watches the claim until its Sandbox is Ready and has a pod IP.
// progress receives a one-line description of the state whenever it changes.
// It fails fast on terminal states, and on ctx's end returns an error
// carrying the last state seen.
func (c *Clients) WaitReady(ctx context.Context, ns, claim string, progress func(state string)) (ReadySandbox, error) {
	w := &waiter{c: c, ns: ns, claim: claim, progress: progress}
	return w.run(ctx)
}

type waiter struct {
	c        *Clients
	ns       string
	claim    string
	progress func(string)

	sandboxName string
	podName     string
	claimState  string
	sbState     string
	podState    string
	last        string
}

func (w *waiter) state() string {
	parts := []string{"claim " + w.claimState}
	if w.sandboxName != "" {
		parts = append(parts, "sandbox "+w.sandboxName+" "+w.sbState)
	}
	if w.podState != "" {
		parts = append(parts, "pod "+w.podName+" "+w.podState)
	}
	return strings.Join(parts, "; ")
}

func (w *waiter) report() {
	if s := w.state(); s != w.last {
		w.last = s
		if w.progress != nil {
			w.progress(s)
		}
	}
}

func watchOne(ctx context.Context, name string, f func(context.Context, metav1.ListOptions) (watch.Interface, error)) (watch.Interface, error) {
	return f(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
}

func (w *waiter) run(ctx context.Context) (ReadySandbox, error) {
	w.claimState = "created"
	claims, err := watchOne(ctx, w.claim, w.c.Extensions.ExtensionsV1beta1().SandboxClaims(w.ns).Watch)
	if err != nil {
		return ReadySandbox{}, fmt.Errorf("watching SandboxClaim %s/%s: %w", w.ns, w.claim, err)
	}
	defer claims.Stop()
	var sandboxes, pods watch.Interface
	defer func() {
		if sandboxes != nil {
			sandboxes.Stop()
		}
		if pods != nil {
			pods.Stop()
		}
	}()
	var sb *sandboxv1beta1.Sandbox
	var pod *corev1.Pod
	var unschedulable <-chan time.Time // armed while the pod is Unschedulable
	for {
		var sbCh, podCh <-chan watch.Event
		if sandboxes != nil {
			sbCh = sandboxes.ResultChan()
		}
		if pods != nil {
			podCh = pods.ResultChan()
		}
		select {
		case <-ctx.Done():
			return ReadySandbox{}, &WaitError{Claim: w.ns + "/" + w.claim, State: w.state(), Err: ctx.Err()}
		case <-unschedulable:
			if err := unschedulableErr(pod); err != nil {
				return ReadySandbox{}, err
			}
			unschedulable = nil
		case ev, ok := <-claims.ResultChan():
			if !ok {
				if claims, err = watchOne(ctx, w.claim, w.c.Extensions.ExtensionsV1beta1().SandboxClaims(w.ns).Watch); err != nil {
					return ReadySandbox{}, err
				}
				continue
			}
			if ev.Type == watch.Deleted {
				return ReadySandbox{}, &TerminalError{Reason: "ClaimDeleted", Message: fmt.Sprintf("SandboxClaim %s/%s was deleted while waiting", w.ns, w.claim)}
			}
			cl, ok := ev.Object.(*extv1beta1.SandboxClaim)
			if !ok {
				continue
			}
			w.claimState = conditionState(cl.Status.Conditions)
			if cond := meta.FindStatusCondition(cl.Status.Conditions, "Ready"); cond != nil && cond.Status == metav1.ConditionFalse && terminalReason(cond.Reason) {
				return ReadySandbox{}, &TerminalError{Reason: cond.Reason, Message: cond.Message}
			}
			if n := cl.Status.SandboxStatus.Name; n != "" && w.sandboxName == "" {
				w.sandboxName, w.podName = n, n
				var podErr error
				opened := make(chan struct{})
				go func() { // both watches at once: this is on every New's path
					defer close(opened)
					pods, podErr = watchOne(ctx, n, w.c.Core.CoreV1().Pods(w.ns).Watch)
				}()
				sandboxes, err = watchOne(ctx, n, w.c.Sandboxes.AgentsV1beta1().Sandboxes(w.ns).Watch)
				<-opened
				if err != nil {
					return ReadySandbox{}, fmt.Errorf("watching Sandbox %s/%s: %w", w.ns, n, err)
				}
				if podErr != nil {
					return ReadySandbox{}, fmt.Errorf("watching pod %s/%s: %w", w.ns, n, podErr)
				}
			}
		case ev, ok := <-sbCh:
			if !ok {
				sandboxes, err = watchOne(ctx, w.sandboxName, w.c.Sandboxes.AgentsV1beta1().Sandboxes(w.ns).Watch)
				if err != nil {
					return ReadySandbox{}, err
				}
				continue
			}
			if s, ok := ev.Object.(*sandboxv1beta1.Sandbox); ok {
				sb = s
				w.sbState = conditionState(s.Status.Conditions)
				if cond := meta.FindStatusCondition(s.Status.Conditions, "Ready"); cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == sandboxv1beta1.SandboxReasonExpired {
					return ReadySandbox{}, &TerminalError{Reason: cond.Reason, Message: fmt.Sprintf("Sandbox %s/%s: %s", w.ns, s.Name, cond.Message)}
				}
				if pn := s.Annotations[sandboxv1beta1.SandboxPodNameAnnotation]; pn != "" && pn != w.podName {
					w.podName = pn // adopted from a warm pool: the pod keeps its own name
					pods.Stop()
					if pods, err = watchOne(ctx, pn, w.c.Core.CoreV1().Pods(w.ns).Watch); err != nil {
						return ReadySandbox{}, err
					}
				}
			}
		case ev, ok := <-podCh:
			if !ok {
				if pods, err = watchOne(ctx, w.podName, w.c.Core.CoreV1().Pods(w.ns).Watch); err != nil {
					return ReadySandbox{}, err
				}
				continue
			}
			if p, ok := ev.Object.(*corev1.Pod); ok {
				pod = p
				w.podState = PodState(p)
				if err := podTerminal(p); err != nil {
					return ReadySandbox{}, err
				}
				switch {
				case unschedulableErr(p) == nil:
					unschedulable = nil
				case unschedulable == nil:
					// A node that just joined is briefly tainted: Unschedulable
					// is final only when it lasts.
					unschedulable = time.After(UnschedulableGrace)
				}
			}
		}
		w.report()
		if sb != nil && meta.IsStatusConditionTrue(sb.Status.Conditions, "Ready") {
			ip := firstIPv4(sb.Status.PodIPs)
			if ip == "" && pod != nil {
				ip = pod.Status.PodIP
			}
			if ip != "" {
				return ReadySandbox{
					SandboxName: w.sandboxName, PodName: w.podName, PodIP: ip, NodeName: sb.Status.NodeName,
					Warm: sb.Labels["agents.x-k8s.io/launch-type"] == "warm" || w.podName != w.sandboxName,
				}, nil
			}
		}
	}
}

// WaitError is a wait that ran out of time; it carries the last state seen.
type WaitError struct {
	Claim, State string
	Err          error
}

func (e *WaitError) Error() string {
	return fmt.Sprintf("sandbox for claim %s not Ready: %v; last state: %s", e.Claim, e.Err, e.State)
}

func (e *WaitError) Unwrap() error { return e.Err }

func conditionState(conds []metav1.Condition) string {
	c := meta.FindStatusCondition(conds, "Ready")
	if c == nil {
		return "(no Ready condition yet)"
	}
	s := "Ready=" + string(c.Status)
	if c.Status != metav1.ConditionTrue {
		if c.Reason != "" {
			s += " reason=" + c.Reason
		}
		if c.Message != "" {
			s += " message=" + c.Message
		}
	}
	return s
}

// UnschedulableGrace is how long a pod may stay Unschedulable before
// waiting for it is given up.
const UnschedulableGrace = 5 * time.Second

// unschedulableErr describes a pod the scheduler cannot place, or is nil.
func unschedulableErr(p *corev1.Pod) error {
	if p == nil {
		return nil
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return &TerminalError{Reason: "Unschedulable", Message: fmt.Sprintf("pod %s/%s: %s", p.Namespace, p.Name, c.Message)}
		}
	}
	return nil
}

// podTerminal reports states of a pod that waiting cannot fix.
func podTerminal(p *corev1.Pod) error {
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return &TerminalError{Reason: "Pod" + string(p.Status.Phase), Message: fmt.Sprintf("pod %s/%s %s: %s %s", p.Namespace, p.Name, p.Status.Phase, p.Status.Reason, p.Status.Message)}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff" || w.Reason == "InvalidImageName" || w.Reason == "CreateContainerConfigError") {
			return &TerminalError{Reason: w.Reason, Message: fmt.Sprintf("pod %s/%s container %s (image %s): %s", p.Namespace, p.Name, cs.Name, cs.Image, w.Message)}
		}
	}
	return nil
}

func firstIPv4(ips []string) string {
	for _, ip := range ips {
		if !strings.Contains(ip, ":") {
			return ip
		}
	}
	if len(ips) > 0 {
		return ips[0]
	}
	return ""
}

// DeleteClaim deletes the claim and waits (bounded by ctx) until its Sandbox is gone.
func (c *Clients) DeleteClaim(ctx context.Context, ns, claim, sandbox string) error {
	err := c.Extensions.ExtensionsV1beta1().SandboxClaims(ns).Delete(ctx, claim, metav1.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationBackground)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting SandboxClaim %s/%s: %w", ns, claim, err)
	}
	if sandbox == "" {
		return nil
	}
	sbs := c.Sandboxes.AgentsV1beta1().Sandboxes(ns)
	w, err := watchOne(ctx, sandbox, sbs.Watch)
	if err != nil {
		return err
	}
	defer w.Stop()
	if _, err := sbs.Get(ctx, sandbox, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("Sandbox %s/%s still exists after its claim was deleted: %w", ns, sandbox, ctx.Err())
		case ev, ok := <-w.ResultChan():
			if !ok {
				if _, err := sbs.Get(ctx, sandbox, metav1.GetOptions{}); apierrors.IsNotFound(err) {
					return nil
				}
				if w, err = watchOne(ctx, sandbox, sbs.Watch); err != nil {
					return err
				}
				continue
			}
			if ev.Type == watch.Deleted {
				return nil
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

// IsTerminal reports whether err says waiting longer cannot help.
func IsTerminal(err error) bool {
	var t *TerminalError
	return errors.As(err, &t)
}

// ClaimStatus is a claim's and its Sandbox's status conditions, read once.
type ClaimStatus struct {
	ClaimFound   bool               // false: the claim is gone (or never was)
	Claim        []metav1.Condition // the claim's conditions
	SandboxName  string             // from the claim's status, else the name asked for
	SandboxFound bool               // false: the Sandbox is gone, or not created yet
	Sandbox      []metav1.Condition // the Sandbox's conditions
}

// ReadClaimStatus reads the claim ns/claim and its Sandbox (sandbox, or the
// one the claim's status names). A missing object is not an error: its
// Found field is false.
func (c *Clients) ReadClaimStatus(ctx context.Context, ns, claim, sandbox string) (ClaimStatus, error) {
	st := ClaimStatus{SandboxName: sandbox}
	cl, err := c.Extensions.ExtensionsV1beta1().SandboxClaims(ns).Get(ctx, claim, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return st, fmt.Errorf("reading SandboxClaim %s/%s: %w", ns, claim, err)
	default:
		st.ClaimFound, st.Claim = true, cl.Status.Conditions
		if n := cl.Status.SandboxStatus.Name; n != "" {
			st.SandboxName = n
		}
	}
	if st.SandboxName == "" {
		return st, nil
	}
	sb, err := c.Sandboxes.AgentsV1beta1().Sandboxes(ns).Get(ctx, st.SandboxName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return st, fmt.Errorf("reading Sandbox %s/%s: %w", ns, st.SandboxName, err)
	default:
		st.SandboxFound, st.Sandbox = true, sb.Status.Conditions
	}
	return st, nil
}
