package processnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8stesting "k8s.io/client-go/testing"
)

// A pod whose container runs and passes its first readiness probe within
// pendingReportAfter reports one status, Running and Ready: each status is
// one more write to kube-apiserver before the pod's Ready.
func TestQuickStartReportsOnce(t *testing.T) {
	t.Parallel()
	h, _, pod, _ := startFakePod(t, corev1.RestartPolicyAlways)
	h.waitPod(pod, "Running and Ready", func(p *corev1.Pod) bool {
		return isRunning(p) && p.Status.ContainerStatuses[0].Ready
	})
	time.Sleep(2 * pendingReportAfter) // a late Pending would be here by now
	var reported []string
	for _, n := range h.notifications() {
		reported = append(reported, fmt.Sprintf("%s ready=%v", n.Status.Phase, n.Status.ContainerStatuses[0].Ready))
	}
	assert.Check(t, is.DeepEqual(reported, []string{"Running ready=true"}))
}

func TestCreatePodPendingThenRunning(t *testing.T) {
	t.Parallel()
	fr := newFakeRunner()
	fr.gate = make(chan struct{})
	h := newHarness(t, registryWith("fake-image", fr))
	pod := testPod(corev1.RestartPolicyAlways)
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "GREETING", Value: "hello"}}

	h.create(pod)

	// While the runner has not returned, the pod is Pending and creating,
	// and says so once its start has taken pendingReportAfter.
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if len(h.notifications()) == 0 {
			return poll.Continue("no status reported yet")
		}
		return poll.Success()
	}, poll.WithTimeout(10*time.Second), poll.WithDelay(10*time.Millisecond))
	first := h.notifications()
	assert.Check(t, is.Equal(first[0].Status.Phase, corev1.PodPending))
	got := h.pod(pod)
	assert.Check(t, is.Equal(got.Status.Phase, corev1.PodPending))
	assert.Assert(t, is.Len(got.Status.ContainerStatuses, 1))
	assert.Check(t, is.Equal(got.Status.ContainerStatuses[0].State.Waiting.Reason, "ContainerCreating"))
	assert.Check(t, is.Equal(condition(got, corev1.PodReady).Status, corev1.ConditionFalse))
	podIP := got.Status.PodIP
	assert.Check(t, strings.HasPrefix(podIP, fmt.Sprintf("127.%d.", h.p.ips.block)), podIP)

	close(fr.gate)
	inst := fr.next(t)
	running := h.waitPod(pod, "Running and Ready", func(p *corev1.Pod) bool {
		return isRunning(p) && p.Status.ContainerStatuses[0].Ready
	})
	assert.Check(t, is.Equal(running.Status.PodIP, podIP))
	assert.Check(t, is.Equal(condition(running, corev1.PodReady).Status, corev1.ConditionTrue))
	assert.Check(t, is.Equal(condition(running, corev1.ContainersReady).Status, corev1.ConditionTrue))
	cs := running.Status.ContainerStatuses[0]
	assert.Check(t, is.Equal(cs.RestartCount, int32(0)))
	assert.Check(t, cs.Started != nil && *cs.Started)
	assert.Check(t, is.Equal(cs.Image, fakeImage))

	// What the runner was given.
	c := inst.c
	assert.Check(t, is.Equal(c.PodIP, podIP))
	assert.Check(t, is.Equal(c.Spec.Name, "main"))
	assert.Check(t, is.Equal(c.Pod.UID, pod.UID))
	wantDir := filepath.Join(h.p.cfg.Dir, "pods", "default_"+pod.Name+"_"+string(pod.UID), "main")
	assert.Check(t, is.Equal(c.Dir, wantDir))
	st, err := os.Stat(c.Dir)
	assert.Check(t, err == nil && st.IsDir(), "container dir: %v", err)
	assert.Check(t, is.Equal(c.LogPath, filepath.Dir(wantDir)+"/main.log"))
	assert.Check(t, is.Contains(c.Env, "GREETING=hello"))
	assert.Check(t, is.Contains(c.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), "the image's PATH, not the node's")

	// The phases reported through NotifyPods go Pending -> Running, never back.
	h.waitNotified("Running and Ready", func(p *corev1.Pod) bool {
		return isRunning(p) && p.Status.ContainerStatuses[0].Ready
	})
	var phases []corev1.PodPhase
	for _, n := range h.notifications() {
		if len(phases) == 0 || phases[len(phases)-1] != n.Status.Phase {
			phases = append(phases, n.Status.Phase)
		}
	}
	assert.Check(t, is.DeepEqual(phases, []corev1.PodPhase{corev1.PodPending, corev1.PodRunning}))
	assert.Check(t, hasEvent(h, "Normal Started Started container main (image "+fakeImage+") on "+podIP))
}

func TestReadinessTCPSocketProbe(t *testing.T) {
	t.Parallel()
	fr := newFakeRunner()
	h := newHarness(t, registryWith("fake-image", fr))
	pod := testPod(corev1.RestartPolicyAlways)
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}, // a named port
	}}
	h.create(pod)
	inst := fr.next(t)

	running := h.waitPod(pod, "Running", isRunning)
	assertNotReadyFor(t, h, pod, 200*time.Millisecond)

	listenOn(t, inst.c.PodIP, 8080) // the container starts serving on its own address
	ready := h.waitPod(pod, "Ready", func(p *corev1.Pod) bool { return p.Status.ContainerStatuses[0].Ready })
	assert.Check(t, is.Equal(condition(ready, corev1.PodReady).Status, corev1.ConditionTrue))
	assert.Check(t, is.Equal(ready.Status.PodIP, running.Status.PodIP))
}

func TestReadinessExecProbe(t *testing.T) {
	t.Parallel()
	fr := newFakeRunner()
	h := newHarness(t, registryWith("fake-image", fr))
	pod := testPod(corev1.RestartPolicyAlways)
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "test -f ready"}},
	}}
	h.create(pod)
	inst := fr.next(t)

	h.waitPod(pod, "Running", isRunning)
	assertNotReadyFor(t, h, pod, 200*time.Millisecond)

	// The probe runs in the container's directory.
	assert.NilError(t, os.WriteFile(filepath.Join(inst.c.Dir, "ready"), nil, 0o644))
	h.waitPod(pod, "Ready", func(p *corev1.Pod) bool { return p.Status.ContainerStatuses[0].Ready })
}

// A ready container whose probe then fails failureThreshold times in a row
// becomes unready. FailureThreshold 1 must mean one failure, not three.
func TestReadinessProbeFailureThreshold(t *testing.T) {
	t.Parallel()
	fr := newFakeRunner()
	h := newHarness(t, registryWith("fake-image", fr))
	pod := testPod(corev1.RestartPolicyAlways)
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
		PeriodSeconds:    1,
		FailureThreshold: 1,
	}
	var lnDone func()
	fr.onStart = func(f *fakeInstance) error {
		ln := listenOn(t, f.c.PodIP, 8080)
		lnDone = func() { ln.Close() }
		return nil
	}
	h.create(pod)
	fr.next(t)
	h.waitPod(pod, "Ready", func(p *corev1.Pod) bool { return isRunning(p) && p.Status.ContainerStatuses[0].Ready })

	lnDone()
	start := time.Now()
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		p := h.pod(pod)
		if !p.Status.ContainerStatuses[0].Ready {
			return poll.Success()
		}
		return poll.Continue("still ready %s after the listener closed", time.Since(start))
	}, poll.WithTimeout(1900*time.Millisecond), poll.WithDelay(20*time.Millisecond))
	got := h.pod(pod)
	assert.Check(t, is.Equal(condition(got, corev1.PodReady).Status, corev1.ConditionFalse))
	assert.Check(t, is.Equal(got.Status.Phase, corev1.PodRunning), "unready is not stopped")
	assert.Check(t, hasEventPrefix(h, "Warning Unhealthy Readiness probe failed for main"))
}

func assertNotReadyFor(t *testing.T, h *harness, pod *corev1.Pod, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		p := h.pod(pod)
		assert.Assert(t, !p.Status.ContainerStatuses[0].Ready, "Ready before the probe can pass: %s", describe(p))
		assert.Assert(t, is.Equal(condition(p, corev1.PodReady).Status, corev1.ConditionFalse))
		assert.Assert(t, is.Equal(condition(p, corev1.PodReady).Reason, "ContainersNotReady"))
	}
}

func TestRestartPolicyAlwaysRestarts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy corev1.RestartPolicy
		code   int
		reason string
	}{
		{corev1.RestartPolicyAlways, 0, "Completed"}, // even a clean exit is restarted
		{corev1.RestartPolicyAlways, 7, "Error"},
		{"", 7, "Error"}, // the default policy is Always
	} {
		t.Run(fmt.Sprintf("policy=%q,exit=%d", tc.policy, tc.code), func(t *testing.T) {
			t.Parallel()
			h, fr, pod, first := startFakePod(t, tc.policy)
			h.waitPod(pod, "Running", isRunning)

			first.exit(tc.code)
			second := fr.next(t)
			assert.Check(t, second != first)
			got := h.waitPod(pod, "Running again", func(p *corev1.Pod) bool {
				return isRunning(p) && p.Status.ContainerStatuses[0].RestartCount == 1
			})
			last := got.Status.ContainerStatuses[0].LastTerminationState.Terminated
			assert.Assert(t, last != nil)
			assert.Check(t, is.Equal(last.ExitCode, int32(tc.code)))
			assert.Check(t, is.Equal(last.Reason, tc.reason))
			assert.Check(t, !last.StartedAt.IsZero())

			// Between the runs the container waited in CrashLoopBackOff, and
			// the pod stayed Running (as a kubelet reports it), not Pending.
			sawBackOff := false
			for _, n := range h.notifications() {
				if w := n.Status.ContainerStatuses[0].State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
					sawBackOff = true
					assert.Check(t, is.Equal(n.Status.Phase, corev1.PodRunning))
					assert.Check(t, is.Equal(n.Status.ContainerStatuses[0].RestartCount, int32(1)))
				}
			}
			assert.Check(t, sawBackOff)
		})
	}
}

func TestRestartPolicyOnFailure(t *testing.T) {
	t.Parallel()
	t.Run("exit 0 ends the pod", func(t *testing.T) {
		t.Parallel()
		h, fr, pod, inst := startFakePod(t, corev1.RestartPolicyOnFailure)
		inst.exit(0)
		got := h.waitPod(pod, "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
		cs := got.Status.ContainerStatuses[0]
		assert.Assert(t, cs.State.Terminated != nil)
		assert.Check(t, is.Equal(cs.State.Terminated.ExitCode, int32(0)))
		assert.Check(t, is.Equal(cs.State.Terminated.Reason, "Completed"))
		assert.Check(t, is.Equal(cs.RestartCount, int32(0)))
		assert.Check(t, cs.LastTerminationState.Terminated == nil)
		assert.Check(t, !cs.Ready)
		select {
		case <-fr.started:
			t.Error("the container was started again after exit 0 under OnFailure")
		case <-time.After(700 * time.Millisecond): // longer than the first back-off
		}
	})
	t.Run("exit 1 restarts", func(t *testing.T) {
		t.Parallel()
		h, fr, pod, inst := startFakePod(t, corev1.RestartPolicyOnFailure)
		inst.exit(1)
		fr.next(t)
		got := h.waitPod(pod, "restarted", func(p *corev1.Pod) bool {
			return isRunning(p) && p.Status.ContainerStatuses[0].RestartCount == 1
		})
		assert.Check(t, is.Equal(got.Status.ContainerStatuses[0].LastTerminationState.Terminated.ExitCode, int32(1)))
	})
}

func TestRestartPolicyNeverFails(t *testing.T) {
	t.Parallel()
	h, fr, pod, inst := startFakePod(t, corev1.RestartPolicyNever)
	h.waitPod(pod, "Running", isRunning)
	inst.exit(1)
	got := h.waitPod(pod, "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	cs := got.Status.ContainerStatuses[0]
	assert.Assert(t, cs.State.Terminated != nil, describe(got))
	assert.Check(t, is.Equal(cs.State.Terminated.ExitCode, int32(1)))
	assert.Check(t, is.Equal(cs.State.Terminated.Reason, "Error"))
	assert.Check(t, !cs.State.Terminated.StartedAt.IsZero(), "StartedAt carries the run's start")
	assert.Check(t, !cs.State.Terminated.FinishedAt.Before(&cs.State.Terminated.StartedAt))
	assert.Check(t, is.Equal(cs.RestartCount, int32(0)))
	assert.Check(t, is.Equal(condition(got, corev1.PodReady).Status, corev1.ConditionFalse))
	h.waitNotified("the end", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	assert.Check(t, is.Equal(fr.count(), 1))
}

func TestStartErrorIsReported(t *testing.T) {
	t.Parallel()
	fr := newFakeRunner()
	fr.onStart = func(*fakeInstance) error { return errors.New("binary not found") }
	h := newHarness(t, registryWith("fake-image", fr))
	pod := testPod(corev1.RestartPolicyNever)
	h.create(pod)
	got := h.waitPod(pod, "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	term := got.Status.ContainerStatuses[0].State.Terminated
	assert.Assert(t, term != nil)
	assert.Check(t, is.Equal(term.Reason, "StartError"))
	assert.Check(t, is.Equal(term.Message, "binary not found"))
	assert.Check(t, is.Equal(term.ExitCode, int32(1)))
	assert.Check(t, hasEvent(h, "Warning Failed container main: binary not found"))
}

func TestDeletePodStopsReportsAndRemoves(t *testing.T) {
	t.Parallel()
	h, fr, pod, inst := startFakePod(t, corev1.RestartPolicyAlways)
	running := h.waitPod(pod, "Running", isRunning)
	ip := running.Status.PodIP
	assert.Check(t, h.p.ips.isUsed(ip))
	podDir := filepath.Dir(inst.c.Dir)

	del := pod.DeepCopy()
	now := metav1.Now()
	del.DeletionTimestamp, del.DeletionGracePeriodSeconds = &now, ptr(int64(3))
	h.client.ClearActions()
	assert.NilError(t, h.p.DeletePod(context.Background(), del))
	h.waitGone(pod)

	// Stopped once, with the deletion's grace period; not restarted.
	assert.Check(t, is.Equal(inst.stops.Load(), int32(1)))
	assert.Check(t, is.Equal(time.Duration(inst.stopGrace.Load()), 3*time.Second))
	assert.Check(t, is.Equal(fr.count(), 1))

	// The last status reported is terminal.
	last := h.lastNotification()
	assert.Assert(t, last != nil)
	assert.Check(t, last.Status.Phase == corev1.PodSucceeded || last.Status.Phase == corev1.PodFailed, describe(last))
	for _, cs := range last.Status.ContainerStatuses {
		assert.Check(t, cs.State.Terminated != nil, "container %s: %s", cs.Name, describe(last))
	}
	assert.Check(t, last.DeletionTimestamp != nil)

	// Removed from the API at once, only if it is still the same pod.
	var deletes []k8stesting.DeleteAction
	for _, a := range h.client.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok && a.GetResource().Resource == "pods" {
			deletes = append(deletes, d)
		}
	}
	assert.Assert(t, is.Len(deletes, 1))
	assert.Check(t, is.Equal(deletes[0].GetName(), pod.Name))
	assert.Check(t, is.Equal(deletes[0].GetNamespace(), pod.Namespace))
	opts := deletes[0].GetDeleteOptions()
	assert.Assert(t, opts.GracePeriodSeconds != nil)
	assert.Check(t, is.Equal(*opts.GracePeriodSeconds, int64(0)))
	assert.Assert(t, opts.Preconditions != nil && opts.Preconditions.UID != nil)
	assert.Check(t, is.Equal(*opts.Preconditions.UID, pod.UID))
	_, err := h.client.CoreV1().Pods(pod.Namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
	assert.Check(t, apierrors.IsNotFound(err), "pod still in the API: %v", err)

	// The address and the folder are freed.
	assert.Check(t, !h.p.ips.isUsed(ip), "address %s still in use", ip)
	_, err = os.Stat(podDir)
	assert.Check(t, os.IsNotExist(err), "pod folder left behind: %v", err)
	_, err = h.p.GetPod(context.Background(), pod.Namespace, pod.Name)
	assert.Check(t, errdefs.IsNotFound(err))

	// A second delete of a gone pod says so.
	err = h.p.DeletePod(context.Background(), del)
	assert.Check(t, errdefs.IsNotFound(err), "%v", err)
}

func TestDeletePodGracePeriod(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		deletion, podTGP *int64
		want             time.Duration
	}{
		{"from the deletion", ptr(int64(4)), ptr(int64(9)), 4 * time.Second},
		{"from terminationGracePeriodSeconds", nil, ptr(int64(9)), 9 * time.Second},
		{"default", nil, nil, 30 * time.Second},
		{"zero", ptr(int64(0)), ptr(int64(9)), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fr := newFakeRunner()
			h := newHarness(t, registryWith("fake-image", fr))
			pod := testPod(corev1.RestartPolicyAlways)
			pod.Spec.TerminationGracePeriodSeconds = tc.podTGP
			h.create(pod)
			inst := fr.next(t)
			h.waitPod(pod, "Running", isRunning)
			del := pod.DeepCopy()
			del.DeletionGracePeriodSeconds = tc.deletion
			assert.NilError(t, h.p.DeletePod(context.Background(), del))
			h.waitGone(pod)
			assert.Check(t, is.Equal(time.Duration(inst.stopGrace.Load()), tc.want))
		})
	}
}

// A pod deleted while its container is still starting must not hang: the
// container that comes up after the stop began is stopped as well.
func TestDeletePodWhileContainerStarts(t *testing.T) {
	t.Parallel()
	fr := newFakeRunner()
	fr.gate = make(chan struct{})
	h := newHarness(t, registryWith("fake-image", fr))
	pod := testPod(corev1.RestartPolicyAlways)
	h.create(pod)
	assert.Check(t, is.Equal(h.pod(pod).Status.Phase, corev1.PodPending))
	r := h.p.get(pod.Namespace, pod.Name)
	<-r.sandboxed // the container's start is next, held by the gate

	del := pod.DeepCopy()
	del.DeletionGracePeriodSeconds = ptr(int64(1))
	assert.NilError(t, h.p.DeletePod(context.Background(), del))
	poll.WaitOn(t, func(poll.LogT) poll.Result { // the stop has looked for instances and found none
		if r.stopGrace() == time.Second {
			return poll.Success()
		}
		return poll.Continue("stop not begun")
	}, poll.WithTimeout(5*time.Second), poll.WithDelay(5*time.Millisecond))
	close(fr.gate)
	inst := fr.next(t)
	h.waitGone(pod)
	assert.Check(t, inst.exited(), "the late container was left running")
	assert.Check(t, is.Equal(fr.count(), 1))
}

func TestUnknownImageFailsWithNoRunner(t *testing.T) {
	t.Parallel()
	fr := newFakeRunner()
	h := newHarness(t, registryWith("fake-image", fr))
	pod := testPod(corev1.RestartPolicyAlways)
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "web", Image: "docker.io/library/nginx:1.27"})
	h.create(pod)

	got := h.pod(pod) // decided synchronously in CreatePod
	assert.Check(t, is.Equal(got.Status.Phase, corev1.PodFailed))
	assert.Check(t, is.Equal(got.Status.Reason, "NoRunner"))
	assert.Check(t, is.Contains(got.Status.Message, "container web:"))
	assert.Check(t, is.Contains(got.Status.Message, `"docker.io/library/nginx:1.27"`))
	assert.Check(t, is.Contains(got.Status.Message, `"fake-image"`))
	assert.Check(t, got.Status.PodIP != "")
	for _, cs := range got.Status.ContainerStatuses {
		assert.Check(t, cs.State.Terminated != nil && cs.State.Terminated.Reason == "NoRunner", "container %s", cs.Name)
	}
	assert.Check(t, is.Equal(h.lastNotification().Status.Phase, corev1.PodFailed))
	assert.Check(t, hasEventPrefix(h, "Warning NoRunner container web: no runner for image \"docker.io/library/nginx:1.27\""))
	time.Sleep(50 * time.Millisecond)
	assert.Check(t, is.Equal(fr.count(), 0), "no container of a pod that cannot run is started")

	// Deleting it still frees its address and removes it.
	ip := got.Status.PodIP
	assert.NilError(t, h.p.DeletePod(context.Background(), pod))
	h.waitGone(pod)
	assert.Check(t, !h.p.ips.isUsed(ip))
}

func TestInitContainersIgnoredEvent(t *testing.T) {
	t.Parallel()
	fr := newFakeRunner()
	h := newHarness(t, registryWith("fake-image", fr))
	pod := testPod(corev1.RestartPolicyAlways)
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: fakeImage}}
	h.create(pod)
	fr.next(t)
	h.waitPod(pod, "Running", isRunning)
	assert.Check(t, hasEventPrefix(h, "Warning InitContainersIgnored"))
	assert.Check(t, is.Equal(fr.count(), 1), "the init container is not run")
}

func TestCreatePodTwiceIsIdempotent(t *testing.T) {
	t.Parallel()
	h, fr, pod, _ := startFakePod(t, corev1.RestartPolicyAlways)
	before := h.waitPod(pod, "Running", isRunning)
	assert.NilError(t, h.p.CreatePod(context.Background(), pod))
	time.Sleep(50 * time.Millisecond)
	assert.Check(t, is.Equal(fr.count(), 1))
	assert.Check(t, is.Equal(h.pod(pod).Status.PodIP, before.Status.PodIP))
}

func TestUpdatePodAndGetPods(t *testing.T) {
	t.Parallel()
	fr := newFakeRunner()
	h := newHarness(t, registryWith("fake-image", fr))
	a, b := testPod(corev1.RestartPolicyAlways), testPod(corev1.RestartPolicyAlways)
	h.create(a)
	h.create(b)
	fr.next(t)
	fr.next(t)
	h.waitPod(a, "Running", isRunning)
	h.waitPod(b, "Running", isRunning)

	upd := a.DeepCopy()
	upd.Labels = map[string]string{"updated": "yes"}
	upd.Status.Phase = corev1.PodUnknown // the status is the node's, not the caller's
	assert.NilError(t, h.p.UpdatePod(context.Background(), upd))
	got := h.pod(a)
	assert.Check(t, is.Equal(got.Labels["updated"], "yes"))
	assert.Check(t, is.Equal(got.Status.Phase, corev1.PodRunning))
	assert.Check(t, is.Equal(fr.count(), 2), "an update restarts nothing")

	pods, err := h.p.GetPods(context.Background())
	assert.NilError(t, err)
	names := map[string]string{}
	for _, p := range pods {
		names[p.Name] = p.Status.PodIP
	}
	assert.Check(t, is.Len(names, 2))
	assert.Check(t, names[a.Name] != "" && names[b.Name] != "" && names[a.Name] != names[b.Name], "%v", names)

	st, err := h.p.GetPodStatus(context.Background(), b.Namespace, b.Name)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(st.PodIP, names[b.Name]))
	_, err = h.p.GetPodStatus(context.Background(), "default", "nope")
	assert.Check(t, errdefs.IsNotFound(err))

	sum, err := h.p.GetStatsSummary(context.Background())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(sum.Node.NodeName, "test-node"))
	assert.Check(t, is.Len(sum.Pods, 2))
}

func hasEvent(h *harness, want string) bool {
	return findEvent(h, func(e string) bool { return e == want })
}

func hasEventPrefix(h *harness, prefix string) bool {
	return findEvent(h, func(e string) bool { return strings.HasPrefix(e, prefix) })
}

// findEvent drains the fake recorder into the harness's event list and searches it.
func findEvent(h *harness, match func(string) bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		select {
		case e := <-h.rec.Events:
			h.events = append(h.events, e)
			continue
		default:
		}
		break
	}
	for _, e := range h.events {
		if match(e) {
			return true
		}
	}
	h.t.Logf("events: %q", h.events)
	return false
}
