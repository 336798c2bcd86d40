package processnode

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

const loopbackHostIP = "127.0.0.1"

// Provider is the virtual-kubelet provider whose pods are local processes.
// It reports every status change through NotifyPods as it happens.
type Provider struct {
	cfg      Config
	runners  *Registry
	ips      *addrPool
	recorder record.EventRecorder

	net           *podinit.Network // nil: pods share the host's network
	apiForward    net.Listener     // the API server, for pods
	podKubeconfig string           // the kubeconfig pods get, with the server they reach
	probeOnce     sync.Once
	probeHTTP     *http.Client

	ctx     context.Context // ends when the node stops
	started time.Time

	isolated   bool     // pods get namespaces (false: SANDBOXTEST_UNISOLATED=1)
	sandboxErr error    // why this machine cannot isolate pods; every pod fails with it
	limits     *limiter // nil: no limits (unit tests)

	mu       sync.Mutex
	pods     map[string]*podRun // namespace/name
	notifyFn func(*corev1.Pod)
	stopping bool // set by stopAll: no pod starts any more
	spares   spares
}

func podKey(ns, name string) string { return ns + "/" + name }

// NotifyPods registers virtual-kubelet's status callback (node.PodNotifier).
func (p *Provider) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	p.mu.Lock()
	p.notifyFn = cb
	p.mu.Unlock()
}

// CreatePod gives the pod an address and a folder and starts its containers.
func (p *Provider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	key := podKey(pod.Namespace, pod.Name)
	p.mu.Lock()
	if _, ok := p.pods[key]; ok {
		p.mu.Unlock()
		return nil
	}
	if p.stopping {
		p.mu.Unlock()
		return fmt.Errorf("node %s is stopping", p.cfg.Name)
	}
	// A ready spare that fits is the pod's init, and its address the pod's.
	var ip string
	prep := p.podPrep(pod)
	spare := p.readySpare(prep)
	if spare != nil {
		ip, spare.ip = spare.ip, ""
	} else {
		var err error
		if ip, err = p.ips.next(); err != nil {
			p.mu.Unlock()
			return err
		}
	}
	r := &podRun{
		p: p, ip: ip, pod: pod.DeepCopy(), startTime: metav1.Now(), stopped: make(chan struct{}), sandboxed: make(chan struct{}),
		dir:   filepath.Join(p.cfg.Dir, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID)),
		prep:  prep,
		spare: spare,
	}
	p.pods[key] = r
	p.mu.Unlock()

	for _, c := range pod.Spec.Containers {
		r.containers = append(r.containers, &containerRun{spec: c, logPath: filepath.Join(r.dir, c.Name+".log")})
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		r.failReason, r.failMsg = "CreateFailed", err.Error()
	}
	for _, c := range pod.Spec.Containers {
		if _, ok := p.runners.Lookup(c.Image); !ok {
			r.failReason, r.failMsg = "NoRunner", fmt.Sprintf("container %s: %s", c.Name, p.runners.noRunnerMessage(c.Image))
		}
	}
	if r.failReason == "" {
		var err error
		if r.volumes, err = p.prepareVolumes(ctx, pod, r.dir); err != nil {
			r.failReason, r.failMsg = "FailedMount", err.Error()
		}
	}
	if len(pod.Spec.InitContainers) > 0 {
		p.event(pod, corev1.EventTypeWarning, "InitContainersIgnored", "the local process node does not run init containers")
	}
	if r.failReason != "" {
		if r.spare != nil {
			r.spare.kill() // its address is the pod's, freed with it
			r.spare = nil
		}
		p.event(pod, corev1.EventTypeWarning, r.failReason, r.failMsg)
		for _, c := range r.containers {
			c.done = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: r.failReason, Message: r.failMsg, FinishedAt: metav1.Now()}
		}
		close(r.stopped)
		close(r.sandboxed)
		p.notify(r)
		return nil
	}
	time.AfterFunc(pendingReportAfter, func() {
		r.mu.Lock()
		deleting := r.deleting
		r.mu.Unlock()
		if !deleting && !r.reported.Load() {
			p.notify(r) // a slow start shows as Pending, with the pod's address
		}
	})
	r.run(p.ctx)
	return nil
}

// pendingReportAfter is how long a pod's start goes without a status: one
// that runs by then reports Running (and Ready, when its first probe
// passes) as its first status. Each status is one write to kube-apiserver
// (5 to 25 ms on the local cluster), a write waits for the pod's previous
// one, and one that raced it fails on a stale resourceVersion and is
// retried after a back-off: written one after the other, Pending, Running
// and Ready held a python-runtime pod's Ready back by about 10 ms
// (BENCHMARKS.md). A pod started from a spare pod init runs within about
// 10 ms, from a new one within about 40.
const pendingReportAfter = 100 * time.Millisecond

// UpdatePod keeps the latest spec; containers are not restarted on update.
func (p *Provider) UpdatePod(_ context.Context, pod *corev1.Pod) error {
	if r := p.get(pod.Namespace, pod.Name); r != nil {
		r.mu.Lock()
		st := r.pod.Status
		r.pod = pod.DeepCopy()
		r.pod.Status = st
		r.mu.Unlock()
	}
	return nil
}

// DeletePod stops the pod's containers within its grace period, reports the
// terminal status and frees its address. It returns at once; the stop runs behind.
func (p *Provider) DeletePod(_ context.Context, pod *corev1.Pod) error {
	r := p.get(pod.Namespace, pod.Name)
	if r == nil {
		return errdefs.NotFoundf("pod %s/%s is not on this node", pod.Namespace, pod.Name)
	}
	r.mu.Lock()
	already := r.deleting
	r.deleting = true
	r.pod.DeletionTimestamp = pod.DeletionTimestamp
	r.pod.DeletionGracePeriodSeconds = pod.DeletionGracePeriodSeconds
	r.mu.Unlock()
	if already {
		return nil
	}
	grace := 30 * time.Second
	if s := pod.DeletionGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	} else if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	go func() {
		r.stop(grace)
		r.mu.Lock()
		for _, c := range r.containers {
			if c.done == nil {
				c.done = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", FinishedAt: metav1.Now()}
			}
		}
		r.mu.Unlock()
		p.notify(r)
		p.removeFromAPI(pod)
		p.ips.release(r.ip)
		_ = os.RemoveAll(r.dir)
		p.mu.Lock() // last: a pod the node no longer knows has left nothing behind
		if p.pods[podKey(pod.Namespace, pod.Name)] == r {
			delete(p.pods, podKey(pod.Namespace, pod.Name))
		}
		p.mu.Unlock()
	}()
	return nil
}

// removeFromAPI finishes a deletion once the containers are stopped, as a
// kubelet does; virtual-kubelet alone would wait out the whole grace period.
func (p *Provider) removeFromAPI(pod *corev1.Pod) {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	err := p.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr(int64(0)),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && p.ctx.Err() == nil {
		fmt.Fprintf(p.cfg.Log, "sandboxtest: node %s: removing stopped pod %s/%s: %v\n", p.cfg.Name, pod.Namespace, pod.Name, err)
	}
}

// GetPod returns the pod with its current status.
func (p *Provider) GetPod(_ context.Context, ns, name string) (*corev1.Pod, error) {
	r := p.get(ns, name)
	if r == nil {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", ns, name)
	}
	return r.snapshot(), nil
}

// GetPodStatus returns the pod's current status.
func (p *Provider) GetPodStatus(ctx context.Context, ns, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods returns every pod on the node.
func (p *Provider) GetPods(context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	runs := make([]*podRun, 0, len(p.pods))
	for _, r := range p.pods {
		runs = append(runs, r)
	}
	p.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(runs))
	for _, r := range runs {
		out = append(out, r.snapshot())
	}
	return out, nil
}

// stopAll stops every pod; used when the node shuts down.
func (p *Provider) stopAll(grace time.Duration) {
	p.mu.Lock()
	p.stopping = true
	runs := make([]*podRun, 0, len(p.pods))
	for _, r := range p.pods {
		runs = append(runs, r)
	}
	p.mu.Unlock()
	p.stopSpares()
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.stop(grace)
		}()
	}
	wg.Wait()
}

func (p *Provider) get(ns, name string) *podRun {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pods[podKey(ns, name)]
}

func (r *podRun) snapshot() *corev1.Pod {
	st := r.status()
	r.mu.Lock()
	defer r.mu.Unlock()
	pod := r.pod.DeepCopy()
	pod.Status = st
	return pod
}

// notify reports the pod's current status to virtual-kubelet.
func (p *Provider) notify(r *podRun) {
	p.mu.Lock()
	cb := p.notifyFn
	p.mu.Unlock()
	if cb != nil {
		r.reported.Store(true)
		cb(r.snapshot())
	}
}

func (p *Provider) event(pod *corev1.Pod, typ, reason, msg string) {
	if p.recorder != nil {
		p.recorder.Event(pod, typ, reason, msg)
	}
}

// Pids lists the host processes of this node's pods: the cluster network's
// helper, each pod's init, whose end ends every process of the pod, and
// the spare init.
func (p *Provider) Pids() []int {
	p.mu.Lock()
	runs := make([]*podRun, 0, len(p.pods))
	for _, r := range p.pods {
		runs = append(runs, r)
	}
	p.mu.Unlock()
	var pids []int
	if p.net != nil {
		pids = append(pids, p.net.Pid())
	}
	if pid, _ := p.sparePid(); pid != 0 {
		pids = append(pids, pid)
	}
	for _, r := range runs {
		r.mu.Lock()
		if r.sb != nil {
			pids = append(pids, r.sb.Pid())
		} else if r.spare != nil {
			pids = append(pids, r.spare.sb.Pid())
		}
		r.mu.Unlock()
	}
	return pids
}
