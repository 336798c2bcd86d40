package processnode

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/agentsandbox/go-sandboxtest/internal/syncbuf"
)

// Shared helpers of the package's unit tests: a Provider built without
// virtual-kubelet, a controllable fake Runner and polling shortcuts.

const fakeImage = "example.com/fake-image:v1"

func TestMain(m *testing.M) {
	fake.NewClientset() // pays the one-time schema parse (~0.5s) outside any test's timing
	os.Exit(m.Run())
}

var (
	sharedIPsOnce sync.Once
	sharedIPs     *addrPool
	sharedIPsErr  error
)

// testIPs is one address block for every provider of this test binary; the
// kernel drops its lock when the binary exits.
func testIPs(t *testing.T) *addrPool {
	t.Helper()
	sharedIPsOnce.Do(func() { sharedIPs, sharedIPsErr = claimLoopbackBlock() })
	assert.NilError(t, sharedIPsErr)
	return sharedIPs
}

// harness is a Provider with a fake clientset, a fake event recorder and a
// NotifyPods callback that records every status it is given.
type harness struct {
	t      *testing.T
	p      *Provider
	client *fake.Clientset
	rec    *record.FakeRecorder

	mu     sync.Mutex
	notes  []*corev1.Pod
	events []string // drained from rec by findEvent
}

func newHarness(t *testing.T, reg *Registry) *harness {
	t.Helper()
	client := fake.NewClientset()
	rec := record.NewFakeRecorder(1000)
	ctx, cancel := context.WithCancel(context.Background())
	p := &Provider{
		cfg:      Config{Name: "test-node", Client: client, Dir: t.TempDir(), Runners: reg, Log: io.Discard},
		runners:  reg,
		ips:      testIPs(t),
		recorder: rec,
		ctx:      ctx,
		started:  time.Now(),
		pods:     map[string]*podRun{},
	}
	h := &harness{t: t, p: p, client: client, rec: rec}
	p.NotifyPods(ctx, h.record)
	t.Cleanup(func() {
		p.stopAll(2 * time.Second)
		cancel()
	})
	return h
}

func (h *harness) record(pod *corev1.Pod) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.notes = append(h.notes, pod)
}

func (h *harness) notifications() []*corev1.Pod {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*corev1.Pod(nil), h.notes...)
}

func (h *harness) lastNotification() *corev1.Pod {
	n := h.notifications()
	if len(n) == 0 {
		return nil
	}
	return n[len(n)-1]
}

// create adds the pod to the fake API (as the scheduler's view) and creates it on the node.
func (h *harness) create(pod *corev1.Pod) {
	h.t.Helper()
	_, err := h.client.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{})
	assert.NilError(h.t, err)
	assert.NilError(h.t, h.p.CreatePod(context.Background(), pod))
}

func (h *harness) pod(pod *corev1.Pod) *corev1.Pod {
	h.t.Helper()
	got, err := h.p.GetPod(context.Background(), pod.Namespace, pod.Name)
	assert.NilError(h.t, err)
	return got
}

// waitPod polls GetPod until check accepts it.
func (h *harness) waitPod(pod *corev1.Pod, what string, check func(*corev1.Pod) bool) *corev1.Pod {
	h.t.Helper()
	var last *corev1.Pod
	poll.WaitOn(h.t, func(poll.LogT) poll.Result {
		got, err := h.p.GetPod(context.Background(), pod.Namespace, pod.Name)
		if err != nil {
			return poll.Error(err)
		}
		last = got
		if check(got) {
			return poll.Success()
		}
		return poll.Continue("waiting for %s; pod is %s", what, describe(got))
	}, poll.WithTimeout(5*time.Second), poll.WithDelay(10*time.Millisecond))
	return last
}

// waitNotified polls the statuses reported through NotifyPods until check
// accepts the last one. GetPod shows a change as soon as the pod's state
// holds it; its report follows, from the goroutine that made the change.
func (h *harness) waitNotified(what string, check func(*corev1.Pod) bool) *corev1.Pod {
	h.t.Helper()
	var last *corev1.Pod
	poll.WaitOn(h.t, func(poll.LogT) poll.Result {
		last = h.lastNotification()
		if last == nil {
			return poll.Continue("waiting for a report of %s; none yet", what)
		}
		if check(last) {
			return poll.Success()
		}
		return poll.Continue("waiting for a report of %s; last reported: %s", what, describe(last))
	}, poll.WithTimeout(5*time.Second), poll.WithDelay(10*time.Millisecond))
	return last
}

// waitGone polls until the provider no longer knows the pod.
func (h *harness) waitGone(pod *corev1.Pod) {
	h.t.Helper()
	poll.WaitOn(h.t, func(poll.LogT) poll.Result {
		if h.p.get(pod.Namespace, pod.Name) == nil {
			return poll.Success()
		}
		return poll.Continue("pod %s/%s is still on the node", pod.Namespace, pod.Name)
	}, poll.WithTimeout(5*time.Second), poll.WithDelay(10*time.Millisecond))
}

func describe(p *corev1.Pod) string {
	var b strings.Builder
	b.WriteString(string(p.Status.Phase))
	for _, cs := range p.Status.ContainerStatuses {
		b.WriteString(" " + cs.Name + "=")
		switch {
		case cs.State.Running != nil:
			b.WriteString("running")
		case cs.State.Terminated != nil:
			b.WriteString("terminated(" + cs.State.Terminated.Reason + ")")
		case cs.State.Waiting != nil:
			b.WriteString("waiting(" + cs.State.Waiting.Reason + ")")
		}
		if cs.Ready {
			b.WriteString(",ready")
		}
	}
	return b.String()
}

func isRunning(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) > 0 &&
		p.Status.ContainerStatuses[0].State.Running != nil
}

func condition(p *corev1.Pod, t corev1.PodConditionType) corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.PodCondition{}
}

var podSeq atomic.Int64

// testPod is a one-container pod with the fake image and a unique name.
func testPod(policy corev1.RestartPolicy) *corev1.Pod {
	n := podSeq.Add(1)
	name := "pod-" + time.Now().Format("150405") + "-" + itoa(n)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{
			RestartPolicy: policy,
			Containers:    []corev1.Container{{Name: "main", Image: fakeImage}},
		},
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// fakeInstance is a container the test ends at will.
type fakeInstance struct {
	c    *Container
	done chan struct{}
	once sync.Once
	code atomic.Int32

	stops     atomic.Int32
	stopGrace atomic.Int64
	stopCode  int32 // exit code when ended by Stop
}

func newFakeInstance(c *Container) *fakeInstance {
	return &fakeInstance{c: c, done: make(chan struct{})}
}

func (f *fakeInstance) Done() <-chan struct{} { return f.done }
func (f *fakeInstance) ExitCode() int         { return int(f.code.Load()) }

// exit ends the container with code (the first end wins).
func (f *fakeInstance) exit(code int) {
	f.once.Do(func() {
		f.code.Store(int32(code))
		close(f.done)
	})
}

func (f *fakeInstance) Stop(grace time.Duration) error {
	f.stops.Add(1)
	f.stopGrace.Store(int64(grace))
	f.exit(int(f.stopCode))
	return nil
}

func (f *fakeInstance) exited() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// fakeRunner starts fakeInstances and lets the test see and end each of them.
type fakeRunner struct {
	// gate, when set, holds every Start until it is closed.
	gate chan struct{}
	// onStart runs in Start with the new instance (e.g. to open a listener).
	onStart func(*fakeInstance) error

	mu      sync.Mutex
	insts   []*fakeInstance
	started chan *fakeInstance
}

func newFakeRunner() *fakeRunner { return &fakeRunner{started: make(chan *fakeInstance, 100)} }

func (r *fakeRunner) Start(_ context.Context, c *Container) (Instance, error) {
	if r.gate != nil {
		<-r.gate
	}
	inst := newFakeInstance(c)
	if r.onStart != nil {
		if err := r.onStart(inst); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	r.insts = append(r.insts, inst)
	r.mu.Unlock()
	r.started <- inst
	return inst, nil
}

func (r *fakeRunner) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.insts)
}

// next waits for the next started instance.
func (r *fakeRunner) next(t *testing.T) *fakeInstance {
	t.Helper()
	select {
	case inst := <-r.started:
		return inst
	case <-time.After(5 * time.Second):
		t.Fatal("no container was started within 5s")
		return nil
	}
}

func registryWith(pattern string, r Runner) *Registry {
	reg := &Registry{}
	reg.Register(pattern, r)
	return reg
}

// listenOn opens a TCP listener on ip:port for the test's lifetime, accepting
// and closing connections.
func listenOn(t *testing.T, ip string, port int) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, itoa(int64(port))))
	assert.NilError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// syncBuffer is a goroutine-safe buffer that is also an io.WriteCloser.
type syncBuffer struct{ syncbuf.Buffer }

func (s *syncBuffer) Close() error { return nil }

// isUsed reports whether ip is handed out.
func (b *addrPool) isUsed(ip string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used[ip]
}

// startFakePod creates a pod of fake-image with policy on a new harness and
// returns, with them, the pod's first instance once the runner started it.
func startFakePod(t *testing.T, policy corev1.RestartPolicy) (*harness, *fakeRunner, *corev1.Pod, *fakeInstance) {
	t.Helper()
	fr := newFakeRunner()
	h := newHarness(t, registryWith("fake-image", fr))
	pod := testPod(policy)
	h.create(pod)
	return h, fr, pod, fr.next(t)
}
