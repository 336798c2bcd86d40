package connect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// TunnelOptions configures [Tunnel]. The zero value reaches the router
// Service sandbox-router-svc:8080 in namespace default.
type TunnelOptions struct {
	// Namespace of the router Service. Default "default".
	Namespace string
	// SandboxNamespace is where the sandboxes are, when the router runs
	// in a namespace of its own; only messages use it. Default Namespace.
	SandboxNamespace string
	// Service whose selector picks the pods to forward to, as
	// `kubectl port-forward svc/<Service>` does. Default kube.RouterService.
	Service string
	// Port is the Service port to forward; it is resolved to the pod's
	// target port. Default kube.RouterPort (8080).
	Port int
	// ReadyTimeout bounds one setup: finding a Ready pod, the port-forward's
	// ready signal and a first request through it. Default 30s.
	ReadyTimeout time.Duration
	// Log receives setup and healing lines (printf style, no trailing
	// newline needed). It must stay usable as long as the tunnel: a
	// testing.T's Logf does not outlive its test. Default: standard error.
	Log func(format string, args ...any)
}

func (o TunnelOptions) withDefaults() TunnelOptions {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.SandboxNamespace == "" {
		o.SandboxNamespace = o.Namespace
	}
	if o.Service == "" {
		o.Service = kube.RouterService
	}
	if o.Port == 0 {
		o.Port = kube.RouterPort
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = stderrLog
	}
	return o
}

func stderrLog(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sandboxtest: "+strings.TrimSuffix(format, "\n")+"\n", args...)
}

// Intervals of the tunnel's waits.
const (
	pollInterval    = 250 * time.Millisecond // listing pods while waiting for a Ready one
	stillWaiting    = 10 * time.Second       // a wait this long logs "still waiting"
	probeTimeout    = 10 * time.Second       // the first request through a new forward
	healBackoffMin  = 250 * time.Millisecond
	healBackoffMax  = 5 * time.Second
	forwardStopWait = 10 * time.Second // how long Close waits for a forward to wind down
	// drainWait is how long a forward to a pod going away keeps serving the
	// requests already sent through it (a terminating router finishes them)
	// after new ones go to the new forward.
	drainWait = 60 * time.Second
)

// Tunnel opens a client-go SPDY port-forward through kube-apiserver from
// 127.0.0.1:<free port> to a Ready pod chosen through the Service's
// selector, and keeps it open: a monitor notices when the forward ends or
// its pod is deleted or stops being Ready, and re-establishes it to a
// (possibly other) Ready pod, logging it. Until then URL may return the old
// address; a request that failed meanwhile can be retried.
//
// ctx bounds the setup only; the tunnel lives until Close.
func Tunnel(ctx context.Context, cfg *rest.Config, o TunnelOptions) (Conn, error) {
	if cfg == nil {
		return nil, errors.New("sandboxtest: tunnel: no Kubernetes REST config")
	}
	o = o.withDefaults()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("sandboxtest: tunnel: Kubernetes client: %w", err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("sandboxtest: tunnel: SPDY transport: %w", err)
	}
	t := &tunnel{o: o, cs: cs, transport: transport, upgrader: upgrader, monitorDone: make(chan struct{})}
	t.ctx, t.cancel = context.WithCancel(context.WithoutCancel(ctx))
	started := time.Now()
	f, err := t.establish(ctx, 0)
	if err != nil {
		t.cancel()
		return nil, err
	}
	t.cur = f
	o.Log("tunnel to %s/%s via port-forward %s ready in %s", o.Namespace, f.pod, f.addr, since(started))
	go t.monitor()
	return t, nil
}

type tunnel struct {
	o         TunnelOptions
	cs        kubernetes.Interface
	transport http.RoundTripper
	upgrader  spdy.Upgrader

	ctx         context.Context // ends with Close
	cancel      context.CancelFunc
	monitorDone chan struct{}
	closeOnce   sync.Once

	mu       sync.RWMutex
	cur      *forward
	heals    int
	draining map[*forward]bool // replaced forwards still finishing their requests
}

// forward is one port-forward to one pod.
type forward struct {
	pod      string
	uid      string
	podPort  int
	port     int             // local port
	addr     string          // 127.0.0.1:port
	ctx      context.Context // ends when the forward is stopped or the tunnel closed
	cancel   context.CancelFunc
	finished chan struct{} // closed when ForwardPorts returned; err is then set
	err      error
	gone     chan string // the pod watcher's reason to leave this pod
	dialer   *recordingDialer
}

func (f *forward) stop() {
	f.cancel()
	select {
	case <-f.finished:
	case <-time.After(forwardStopWait):
	}
}

func (t *tunnel) URL() string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return "http://" + t.cur.addr
}

func (t *tunnel) Mode() Mode { return ModeTunnel }

// Transport is nil: the tunnel is plain http on 127.0.0.1.
func (t *tunnel) Transport() *http.Transport { return nil }

func (t *tunnel) Describe() string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := fmt.Sprintf("tunnel to %s/%s via port-forward %s (service %s/%s port %d → pod port %d)",
		t.o.Namespace, t.cur.pod, t.cur.addr, t.o.Namespace, t.o.Service, t.o.Port, t.cur.podPort)
	if t.heals > 0 {
		s += fmt.Sprintf("; re-established %d time(s)", t.heals)
	}
	return s
}

// Close stops the monitor and the port-forward. Idempotent.
func (t *tunnel) Close() error {
	t.closeOnce.Do(func() {
		t.cancel()
		<-t.monitorDone
		t.mu.RLock()
		all := []*forward{t.cur}
		for f := range t.draining {
			all = append(all, f)
		}
		t.mu.RUnlock()
		for _, f := range all {
			f.stop()
		}
	})
	return nil
}

// drain stops f, which a new forward replaced, once its requests had
// drainWait to finish, or when it ends by itself or the tunnel closes.
func (t *tunnel) drain(f *forward) {
	select {
	case <-f.finished:
	case <-t.ctx.Done():
	case <-time.After(drainWait):
	}
	f.stop()
	t.mu.Lock()
	delete(t.draining, f)
	t.mu.Unlock()
}

func (t *tunnel) current() *forward {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.cur
}

// monitor re-establishes the forward whenever it ends or its pod goes away.
//
// A forward that ended is replaced on the same local port when it is free.
// A forward whose pod is going away (being deleted, not Ready) keeps
// running while a new one is set up on another port, and drains: requests
// already sent through it get their answers from the terminating router,
// new ones (URL is asked per request) go to the new forward. Cutting them
// would lose answers to commands that ran, and a client that sends again
// what never got an answer would run them twice.
func (t *tunnel) monitor() {
	defer close(t.monitorDone)
	for {
		f := t.current()
		var why string
		drains := false
		select {
		case <-t.ctx.Done():
			return
		case <-f.finished:
			why = "the port-forward ended"
			if f.err != nil {
				why += ": " + f.err.Error()
			}
		case why = <-f.gone:
			drains = true
		}
		preferPort := f.port
		if drains {
			preferPort = 0 // f still listens on its port
		} else {
			f.stop()
		}
		if t.ctx.Err() != nil {
			return
		}
		t.o.Log("tunnel to %s/%s via %s lost (%s); re-establishing", t.o.Namespace, f.pod, f.addr, why)
		started := time.Now()
		backoff := healBackoffMin
		for attempt := 1; ; attempt++ {
			nf, err := t.establish(t.ctx, preferPort)
			if err == nil {
				t.mu.Lock()
				t.cur = nf
				t.heals++
				if drains {
					if t.draining == nil {
						t.draining = map[*forward]bool{}
					}
					t.draining[f] = true
					go t.drain(f)
				}
				t.mu.Unlock()
				t.o.Log("tunnel re-established to %s/%s via port-forward %s after %s (attempt %d)",
					t.o.Namespace, nf.pod, nf.addr, since(started), attempt)
				break
			}
			if t.ctx.Err() != nil {
				return
			}
			t.o.Log("tunnel: re-establishing (attempt %d, %s so far) failed: %v; retrying in %s", attempt, since(started), err, backoff)
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, healBackoffMax)
		}
	}
}

var errSetupTimeout = errors.New("setup timed out")

// establish finds a Ready pod behind the Service and forwards to it,
// preferring the local port preferPort (0: any free port).
func (t *tunnel) establish(parent context.Context, preferPort int) (*forward, error) {
	ctx, cancel := context.WithTimeoutCause(parent, t.o.ReadyTimeout, errSetupTimeout)
	defer cancel()
	svc, err := t.service(ctx)
	if err != nil {
		return nil, err
	}
	sp, err := servicePort(svc, t.o.Port)
	if err != nil {
		return nil, err
	}
	pod, err := t.readyPod(ctx, svc)
	if err != nil {
		return nil, err
	}
	podPort, err := podPortFor(sp, pod)
	if err != nil {
		return nil, err
	}
	f, err := t.startForward(ctx, pod, podPort, preferPort)
	if err != nil && preferPort != 0 && ctx.Err() == nil {
		f, err = t.startForward(ctx, pod, podPort, 0) // the old port may be taken by now
	}
	if err != nil {
		return nil, err
	}
	if err := probe(ctx, f.addr); err != nil {
		f.stop()
		return nil, t.fail(ctx, "probing through the port-forward to pod "+pod.Name,
			fmt.Sprintf("GET http://%s/healthz: %v", f.addr, err), err)
	}
	go t.watchPod(pod, f)
	return f, nil
}

// fail words an error of a setup phase: a timeout or cancellation names the
// phase and the last state seen instead of a bare context error.
func (t *tunnel) fail(ctx context.Context, phase, last string, err error) error {
	where := fmt.Sprintf("tunnel to service %s/%s port %d", t.o.Namespace, t.o.Service, t.o.Port)
	if ctx.Err() != nil {
		if errors.Is(context.Cause(ctx), errSetupTimeout) {
			return fmt.Errorf("sandboxtest: %s: timed out after %s while %s (last state: %s)", where, t.o.ReadyTimeout, phase, last)
		}
		return fmt.Errorf("sandboxtest: %s: %v while %s (last state: %s)", where, context.Cause(ctx), phase, last)
	}
	return fmt.Errorf("sandboxtest: %s: %s: %w", where, phase, err)
}

func (t *tunnel) service(ctx context.Context) (*corev1.Service, error) {
	svc, err := t.cs.CoreV1().Services(t.o.Namespace).Get(ctx, t.o.Service, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, routerMissing(ctx, t.cs, t.o)
	case err != nil:
		return nil, t.fail(ctx, "looking up service "+t.o.Service, err.Error(), err)
	case len(svc.Spec.Selector) == 0:
		return nil, fmt.Errorf("sandboxtest: service %s/%s has no selector, so it names no pods to forward to; "+
			"it should select the router pods (e.g. %s=%s)", t.o.Namespace, t.o.Service, kube.RouterAppLabel, kube.RouterAppValue)
	}
	return svc, nil
}

// readyPod waits, within ctx, for a Ready pod selected by the Service.
func (t *tunnel) readyPod(ctx context.Context, svc *corev1.Service) (*corev1.Pod, error) {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	started, lastLog := time.Now(), time.Now()
	last := "no pod listed yet"
	for {
		pods, err := t.cs.CoreV1().Pods(t.o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err == nil {
			if p := pickReady(pods.Items); p != nil {
				return p, nil
			}
			last = podStates(pods.Items)
		} else if ctx.Err() == nil {
			last = "listing pods: " + err.Error()
		}
		if time.Since(lastLog) >= stillWaiting {
			lastLog = time.Now()
			t.o.Log("tunnel: still waiting for a Ready pod behind service %s/%s (selector %s) after %s; pods: %s",
				t.o.Namespace, t.o.Service, sel, since(started), last)
		}
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), errSetupTimeout) {
				return nil, fmt.Errorf("sandboxtest: service %s/%s selects no Ready pod (selector %s) after %s; pods seen: %s; "+
					"check: kubectl -n %s describe pods -l %s", t.o.Namespace, t.o.Service, sel, t.o.ReadyTimeout, last, t.o.Namespace, sel)
			}
			return nil, t.fail(ctx, "waiting for a Ready pod (selector "+sel.String()+")", last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// pickReady returns the first usable pod by name, or nil.
func pickReady(pods []corev1.Pod) *corev1.Pod {
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	for i := range pods {
		if unusable(&pods[i]) == "" {
			return &pods[i]
		}
	}
	return nil
}

// unusable says why a pod cannot be forwarded to, or "" when it can.
func unusable(p *corev1.Pod) string {
	switch {
	case p.DeletionTimestamp != nil:
		return "is being deleted"
	case p.Status.Phase != corev1.PodRunning:
		return "is " + string(p.Status.Phase)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			if c.Status == corev1.ConditionTrue {
				return ""
			}
			return "is not Ready" + reasonOf(c.Reason, c.Message)
		}
	}
	return "has no Ready condition"
}

// podStates lists pods and why each is not usable, for error messages.
func podStates(pods []corev1.Pod) string {
	if len(pods) == 0 {
		return "none (no pod matches the selector)"
	}
	var parts []string
	for i := range pods {
		p := &pods[i]
		s := p.Name + ": " + string(p.Status.Phase)
		if why := unusable(p); why != "" {
			s += ", " + why
		} else {
			s += ", Ready"
		}
		if p.Status.Reason != "" || p.Status.Message != "" {
			s += reasonOf(p.Status.Reason, p.Status.Message)
		}
		for _, cs := range p.Status.ContainerStatuses {
			reason, msg := "", ""
			switch {
			case cs.State.Waiting != nil:
				s += fmt.Sprintf(", container %s waiting", cs.Name)
				reason, msg = cs.State.Waiting.Reason, cs.State.Waiting.Message
			case cs.State.Terminated != nil:
				s += fmt.Sprintf(", container %s terminated (exit %d)", cs.Name, cs.State.Terminated.ExitCode)
				reason, msg = cs.State.Terminated.Reason, cs.State.Terminated.Message
			}
			if msg != p.Status.Message || reason != p.Status.Reason { // do not repeat the pod's reason
				s += reasonOf(reason, msg)
			}
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

func reasonOf(reason, msg string) string {
	msg = strings.TrimSpace(msg)
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	switch {
	case reason != "" && msg != "":
		return " (" + reason + ": " + msg + ")"
	case reason != "":
		return " (" + reason + ")"
	case msg != "":
		return " (" + msg + ")"
	}
	return ""
}

// servicePort finds the Service port the tunnel forwards.
func servicePort(svc *corev1.Service, port int) (corev1.ServicePort, error) {
	var have []string
	for _, p := range svc.Spec.Ports {
		if int(p.Port) == port {
			return p, nil
		}
		have = append(have, fmt.Sprintf("%d→%s", p.Port, p.TargetPort.String()))
	}
	return corev1.ServicePort{}, fmt.Errorf("sandboxtest: service %s/%s has no port %d (its ports: %v); "+
		"set TunnelOptions.Port to one of them or redeploy: sandboxtest-setup deploy --namespace %s", svc.Namespace, svc.Name, port, have, svc.Namespace)
}

// podPortFor resolves a Service port's targetPort on a pod, as kube-proxy would.
func podPortFor(sp corev1.ServicePort, pod *corev1.Pod) (int, error) {
	tp := sp.TargetPort
	if tp.Type == intstr.Int {
		if tp.IntVal == 0 {
			return int(sp.Port), nil
		}
		return int(tp.IntVal), nil
	}
	if tp.StrVal == "" {
		return int(sp.Port), nil
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == tp.StrVal {
				return int(p.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("sandboxtest: service port %d targets the port named %q, which no container of pod %s/%s declares",
		sp.Port, tp.StrVal, pod.Namespace, pod.Name)
}

// recordingDialer keeps the SPDY connection it dialed, so a test can cut it.
type recordingDialer struct {
	httpstream.Dialer
	mu   sync.Mutex
	conn httpstream.Connection
}

func (d *recordingDialer) Dial(protocols ...string) (httpstream.Connection, string, error) {
	c, p, err := d.Dialer.Dial(protocols...)
	d.mu.Lock()
	d.conn = c
	d.mu.Unlock()
	return c, p, err
}

func (d *recordingDialer) connection() httpstream.Connection {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}

// startForward starts a port-forward to the pod and waits for its ready signal.
// The forward lives until its cancel or the tunnel's Close, not until ctx ends.
func (t *tunnel) startForward(ctx context.Context, pod *corev1.Pod, podPort, localPort int) (*forward, error) {
	u := t.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	d := &recordingDialer{Dialer: spdy.NewDialer(t.upgrader, &http.Client{Transport: t.transport}, http.MethodPost, u)}
	fctx, fcancel := context.WithCancel(t.ctx)
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddressesWithContext(fctx, d, []string{"127.0.0.1"},
		[]string{fmt.Sprintf("%d:%d", localPort, podPort)}, ready, io.Discard, io.Discard)
	if err != nil {
		fcancel()
		return nil, fmt.Errorf("sandboxtest: port-forward to pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	f := &forward{pod: pod.Name, uid: string(pod.UID), podPort: podPort, ctx: fctx, cancel: fcancel,
		finished: make(chan struct{}), gone: make(chan string, 1), dialer: d}
	go func() {
		f.err = fw.ForwardPorts()
		close(f.finished)
	}()
	phase := fmt.Sprintf("starting the port-forward to pod %s port %d", pod.Name, podPort)
	select {
	case <-ready:
	case <-f.finished:
		fcancel()
		return nil, t.fail(ctx, phase, fmt.Sprint(f.err), f.err)
	case <-ctx.Done():
		fcancel()
		return nil, t.fail(ctx, phase, "waiting for the port-forward's ready signal (dialing kube-apiserver, upgrading to SPDY, listening on 127.0.0.1)", ctx.Err())
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		f.stop()
		return nil, fmt.Errorf("sandboxtest: port-forward to pod %s/%s: no local port (%v)", pod.Namespace, pod.Name, err)
	}
	f.port = int(ports[0].Local)
	f.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(f.port))
	return f, nil
}

// probe makes one request through a new forward; any HTTP answer proves
// the path to the pod works.
func probe(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	return getHealthz(ctx, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, "http://"+addr)
}

// getHealthz sends GET base/healthz with c and drains the answer; any
// HTTP answer is a success, whatever its status, unless unavailable says
// which statuses mean "not yet" (then they are an error naming the answer).
func getHealthz(ctx context.Context, c *http.Client, base string, unavailable ...int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if slices.Contains(unavailable, resp.StatusCode) {
		return fmt.Errorf("GET /healthz: %s: %s", resp.Status, strings.TrimSpace(string(body[:min(len(body), 300)])))
	}
	return nil
}

// WaitRouter returns once the router behind conn answers GET /healthz
// (neither a 5xx nor a Gateway's 404 of a route not attached yet), asking
// every 50 ms on a fresh connection each time (a kept-alive one could go
// to a router pod that is gone), or with ctx's end. Through a tunnel, that
// is once the tunnel is re-established to a Ready router pod. A
// runtime.Client waits with it before sending again a request that never
// reached a runtime.
func WaitRouter(ctx context.Context, conn Conn) error {
	tr := &http.Transport{DisableKeepAlives: true}
	if t := conn.Transport(); t != nil {
		tr = t.Clone()
		tr.DisableKeepAlives = true
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	for {
		err := getHealthz(ctx, c, conn.URL(), http.StatusNotFound,
			http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandboxtest: waiting for the router (%s): %w; last: %v", conn.Describe(), ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// watchPod reports on f.gone when the forwarded pod is deleted, replaced,
// or stops being Ready. It ends with the forward.
func (t *tunnel) watchPod(pod *corev1.Pod, f *forward) {
	ctx := f.ctx
	done := ctx.Done()
	pods := t.cs.CoreV1().Pods(pod.Namespace)
	report := func(why string) {
		select {
		case f.gone <- fmt.Sprintf("pod %s %s", pod.Name, why):
		default:
		}
	}
	rv := pod.ResourceVersion
	for {
		if ctx.Err() != nil {
			return
		}
		w, err := pods.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", pod.Name).String(),
			ResourceVersion: rv,
		})
		if err == nil {
			if why, over := t.follow(w, done, pod, &rv); over {
				if why != "" {
					report(why)
				}
				return
			}
		}
		// The watch ended or failed: look again, then watch from there.
		select {
		case <-done:
			return
		case <-time.After(pollInterval):
		}
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			report("was deleted")
			return
		case err != nil:
			rv = "" // watch from the current state
		case string(p.UID) != f.uid:
			report("was replaced by a new pod of the same name")
			return
		default:
			if why := unusable(p); why != "" {
				report(why)
				return
			}
			rv = p.ResourceVersion
		}
	}
}

// follow reads watch events until the pod becomes unusable (over, with a
// reason), the forward ends (over, no reason), or the watch ends (not over).
func (t *tunnel) follow(w watch.Interface, done <-chan struct{}, pod *corev1.Pod, rv *string) (string, bool) {
	defer w.Stop()
	for {
		select {
		case <-done:
			return "", true
		case ev, ok := <-w.ResultChan():
			if !ok {
				return "", false
			}
			switch ev.Type {
			case watch.Deleted:
				return "was deleted", true
			case watch.Error:
				return "", false
			case watch.Added, watch.Modified:
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				*rv = p.ResourceVersion
				if p.UID != pod.UID {
					return "was replaced by a new pod of the same name", true
				}
				if why := unusable(p); why != "" {
					return why, true
				}
			}
		}
	}
}

// ErrRouterNotFound matches (errors.Is) the error of a connection that
// finds no router Service where it looks.
var ErrRouterNotFound = kube.ErrRouterNotFound

// routerMissing words a missing router Service: where it was looked for,
// where the sandboxes are, where a Service of that name exists instead,
// and how to fix it.
func routerMissing(ctx context.Context, cs kubernetes.Interface, o TunnelOptions) error {
	other := fmt.Sprintf(", or set %s to the namespace the router runs in", EnvRouterNamespace)
	if ns := servicesNamed(ctx, cs, o.Service); len(ns) > 0 {
		other = fmt.Sprintf(", or use the %s in namespace %s: %s=%s", o.Service, strings.Join(ns, " or "), EnvRouterNamespace, ns[0])
	}
	if o.Namespace == o.SandboxNamespace {
		return kube.RouterNotFound(fmt.Sprintf("sandboxtest: %s not found in namespace %s; run: sandboxtest-setup deploy --namespace %s%s",
			o.Service, o.Namespace, o.Namespace, other))
	}
	return kube.RouterNotFound(fmt.Sprintf("sandboxtest: %s not found in the router namespace %s (the sandboxes are in namespace %s); "+
		"deploy it there: sandboxtest-setup deploy --namespace %s --router-namespace %s%s",
		o.Service, o.Namespace, o.SandboxNamespace, o.SandboxNamespace, o.Namespace, other))
}

// servicesNamed lists, sorted, the namespaces holding a Service of that
// name; nil when none does or the caller may not list Services cluster-wide.
func servicesNamed(ctx context.Context, cs kubernetes.Interface, name string) []string {
	if ctx.Err() != nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := cs.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		return nil
	}
	var ns []string
	for _, s := range list.Items {
		ns = append(ns, s.Namespace)
	}
	sort.Strings(ns)
	return ns
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }
