package processnode

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// podRun is one pod on this node: its address, its folder and its containers.
type podRun struct {
	p   *Provider
	ip  string
	dir string

	mu         sync.Mutex
	pod        *corev1.Pod // spec as created; status is derived from the containers
	containers []*containerRun
	failReason string // set when the pod cannot run at all
	failMsg    string
	volumes    map[string]string // each volume's prepared host directory, by volume name
	deleting   bool
	grace      time.Duration // of the stop under way, once deleting
	startTime  metav1.Time
	cancel     context.CancelFunc
	stopped    chan struct{} // closed when every container loop has ended
	sb         *podinit.Sandbox
	prep       podinit.Prep  // what its init is prepared for (podPrep), at creation
	spare      *launchedInit // the spare init taken at creation, until startSandbox uses it
	group      *podGroup
	sandboxed  chan struct{} // closed once the sandbox is up (or failed)
	reported   atomic.Bool   // a status has gone to virtual-kubelet
}

// containerRun tracks one container: its instance, restarts and readiness.
type containerRun struct {
	spec     corev1.Container
	workDir  string   // where its processes start (inside the pod when isolated)
	env      []string // image defaults under the spec's env
	logPath  string
	inst     Instance
	started  metav1.Time
	ready    bool
	restarts int32
	waiting  *corev1.ContainerStateWaiting
	last     *corev1.ContainerStateTerminated
	done     *corev1.ContainerStateTerminated // set when it will not run again
}

// run starts the pod's sandbox, then every container loop; the pod's status
// follows through notify.
func (r *podRun) run(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	go func() {
		sb, err := r.startSandbox(ctx)
		r.mu.Lock()
		r.sb = sb
		if err != nil && !r.deleting {
			r.failReason, r.failMsg = "SandboxFailed", err.Error()
		}
		stopping := r.deleting
		r.mu.Unlock()
		close(r.sandboxed)
		if err != nil {
			r.p.event(r.pod, corev1.EventTypeWarning, "SandboxFailed", err.Error())
			r.mu.Lock()
			for _, c := range r.containers {
				c.done = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "SandboxFailed", Message: err.Error(), FinishedAt: metav1.Now()}
			}
			r.mu.Unlock()
			r.p.notify(r)
			close(r.stopped)
			return
		}
		if stopping {
			close(r.stopped)
			return
		}
		r.runContainers(ctx)
	}()
}

func (r *podRun) runContainers(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range r.containers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runContainer(ctx, c)
		}()
	}
	go func() {
		wg.Wait()
		close(r.stopped)
	}()
}

// runContainer starts the container and restarts it as the pod's restartPolicy says.
func (r *podRun) runContainer(ctx context.Context, c *containerRun) {
	backoff := 500 * time.Millisecond
	for {
		runner, ok := r.p.runners.Lookup(c.spec.Image)
		if !ok { // checked at creation; kept for runners unregistered since
			r.finish(c, 1, "NoRunner", r.p.runners.noRunnerMessage(c.spec.Image))
			return
		}
		inst, err := r.startContainer(ctx, runner, c)
		if err != nil {
			r.p.event(r.pod, corev1.EventTypeWarning, "Failed", fmt.Sprintf("container %s: %v", c.spec.Name, err))
			if !r.restartAfter(ctx, c, 1, "StartError", err.Error(), &backoff) {
				return
			}
			continue
		}
		r.p.event(r.pod, corev1.EventTypeNormal, "Started", fmt.Sprintf("Started container %s (image %s) on %s", c.spec.Name, c.spec.Image, r.ip))
		probeCtx, stopProbe := context.WithCancel(ctx)
		go r.probeReadiness(probeCtx, c, inst)
		select {
		case <-inst.Done():
		case <-ctx.Done():
			// Stop was called by delete or shutdown. It stopped the instances
			// it saw; one that came up while it ran is stopped here.
			select {
			case <-inst.Done():
			default:
				_ = inst.Stop(r.stopGrace())
			}
			<-inst.Done()
		}
		stopProbe()
		code := inst.ExitCode()
		reason := "Completed"
		if code != 0 {
			reason = "Error"
		}
		if !r.restartAfter(ctx, c, code, reason, "", &backoff) {
			return
		}
	}
}

func (r *podRun) startContainer(ctx context.Context, runner Runner, c *containerRun) (Instance, error) {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // runners that keep writing open their own handle or copy
	inst, err := runner.Start(ctx, &Container{
		Pod: r.pod, Spec: c.spec, PodIP: r.ip, Dir: c.workDir,
		Env: c.env, Log: &appendFile{path: c.logPath}, LogPath: c.logPath,
		Kubeconfig: r.p.kubeconfigForPods(), Sandbox: r.sb, Isolated: r.p.isolated,
	})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	c.inst, c.started, c.waiting, c.ready = inst, metav1.Now(), nil, false
	r.mu.Unlock()
	// No status here: probeReadiness reports the running container with
	// its first readiness (see pendingReportAfter).
	return inst, nil
}

// restartAfter records an exit and decides, by restartPolicy, whether to go again.
func (r *podRun) restartAfter(ctx context.Context, c *containerRun, code int, reason, msg string, backoff *time.Duration) bool {
	term := &corev1.ContainerStateTerminated{ExitCode: int32(code), Reason: reason, Message: msg, FinishedAt: metav1.Now()}
	r.mu.Lock()
	term.StartedAt = c.started
	c.inst, c.ready = nil, false
	policy := r.pod.Spec.RestartPolicy
	again := ctx.Err() == nil && !r.deleting &&
		(policy == corev1.RestartPolicyAlways || policy == "" || (policy == corev1.RestartPolicyOnFailure && code != 0))
	if again {
		c.last = term
		c.restarts++
		c.waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: fmt.Sprintf("back-off %s restarting container %s", *backoff, c.spec.Name)}
	} else {
		c.done = term
	}
	r.mu.Unlock()
	r.p.notify(r)
	if !again {
		return false
	}
	select {
	case <-ctx.Done():
		r.mu.Lock()
		c.done, c.waiting = term, nil
		r.mu.Unlock()
		r.p.notify(r)
		return false
	case <-time.After(*backoff):
	}
	*backoff = min(*backoff*2, 10*time.Second)
	return true
}

// finish marks a container as ended for good.
func (r *podRun) finish(c *containerRun, code int, reason, msg string) {
	r.mu.Lock()
	c.inst, c.ready = nil, false
	c.done = &corev1.ContainerStateTerminated{ExitCode: int32(code), Reason: reason, Message: msg, FinishedAt: metav1.Now()}
	r.mu.Unlock()
	r.p.notify(r)
}

// stop ends every container within grace; called on pod deletion and node shutdown.
func (r *podRun) stop(grace time.Duration) {
	r.mu.Lock()
	r.deleting, r.grace = true, grace
	var insts []Instance
	for _, c := range r.containers {
		if c.inst != nil {
			insts = append(insts, c.inst)
		}
	}
	cancel := r.cancel
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, inst := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = inst.Stop(grace)
		}()
	}
	wg.Wait()
	if cancel != nil {
		cancel()
		<-r.sandboxed
		<-r.stopped
	}
	r.mu.Lock()
	sb, g := r.sb, r.group
	r.mu.Unlock()
	if sb != nil {
		sb.Kill() // every process of the pod, background ones included
	}
	if g != nil {
		g.remove()
	}
}

func (r *podRun) stopGrace() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.grace
}

// status derives the pod status from the containers, as a kubelet would.
func (r *podRun) status() corev1.PodStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := corev1.PodStatus{
		HostIP:    loopbackHostIP,
		HostIPs:   []corev1.HostIP{{IP: loopbackHostIP}},
		PodIP:     r.ip,
		PodIPs:    []corev1.PodIP{{IP: r.ip}},
		StartTime: &r.startTime,
		QOSClass:  r.pod.Status.QOSClass, // set by kube-apiserver at creation, and immutable
	}
	if r.failReason != "" {
		st.Phase, st.Reason, st.Message = corev1.PodFailed, r.failReason, r.failMsg
	}
	running, ready, ended, failed, restarting := 0, 0, 0, 0, 0
	for _, c := range r.containers {
		cs := corev1.ContainerStatus{
			Name: c.spec.Name, Image: c.spec.Image, ImageID: c.spec.Image,
			RestartCount: c.restarts, LastTerminationState: corev1.ContainerState{Terminated: c.last},
		}
		switch {
		case c.done != nil:
			cs.State.Terminated = c.done
			ended++
			if c.done.ExitCode != 0 {
				failed++
			}
		case c.inst != nil:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: c.started}
			cs.Ready, cs.Started = c.ready, ptr(true)
			running++
			if c.ready {
				ready++
			}
		case c.waiting != nil:
			cs.State.Waiting = c.waiting
			if c.last != nil {
				restarting++ // in back-off after an exit: the pod still runs
			}
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	n := len(r.containers)
	if st.Phase == "" {
		switch {
		case ended == n && failed > 0:
			st.Phase = corev1.PodFailed
		case ended == n:
			st.Phase = corev1.PodSucceeded
		case running > 0 || ended > 0 || restarting > 0:
			st.Phase = corev1.PodRunning
		default:
			st.Phase = corev1.PodPending
		}
	}
	allReady := n > 0 && ready == n
	now := metav1.Now()
	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s, reason = corev1.ConditionTrue, ""
		}
		return corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: now}
	}
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodScheduled, true, ""),
		cond(corev1.PodInitialized, true, ""),
		cond(corev1.ContainersReady, allReady, "ContainersNotReady"),
		cond(corev1.PodReady, allReady, "ContainersNotReady"),
	}
	r.keepTransitionTimes(st.Conditions)
	return st
}

// keepTransitionTimes carries lastTransitionTime over from the previous status
// when a condition did not change, so timelines read true.
func (r *podRun) keepTransitionTimes(conds []corev1.PodCondition) {
	for i := range conds {
		for _, old := range r.pod.Status.Conditions {
			if old.Type == conds[i].Type && old.Status == conds[i].Status {
				conds[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	r.pod.Status.Conditions = conds
}

func ptr[T any](v T) *T { return &v }

// appendFile writes each chunk to the end of a log file, so rotation-free
// readers (kubectl logs) always see whole lines from every writer.
type appendFile struct {
	mu   sync.Mutex
	path string
}

func (a *appendFile) Write(b []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.OpenFile(a.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Write(b)
}
