package processnode

import (
	"fmt"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// bareRun is a podRun with containers in the given states, outside any provider.
func bareRun(containers ...*containerRun) *podRun {
	for i, c := range containers {
		if c.spec.Name == "" {
			c.spec = corev1.Container{Name: fmt.Sprintf("c%d", i), Image: fakeImage}
		}
	}
	return &podRun{
		ip:         "127.42.1.2",
		pod:        &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}},
		containers: containers,
		startTime:  metav1.Now(),
	}
}

func conditionTimes(st corev1.PodStatus) map[corev1.PodConditionType]metav1.Time {
	out := map[corev1.PodConditionType]metav1.Time{}
	for _, c := range st.Conditions {
		out[c.Type] = c.LastTransitionTime
	}
	return out
}

func TestStatusAddressesAndBasics(t *testing.T) {
	t.Parallel()
	r := bareRun(&containerRun{})
	r.pod.Status.QOSClass = corev1.PodQOSBurstable // as kube-apiserver set it at creation
	st := r.status()
	assert.Check(t, is.Equal(st.PodIP, "127.42.1.2"))
	assert.Check(t, is.DeepEqual(st.PodIPs, []corev1.PodIP{{IP: "127.42.1.2"}}))
	assert.Check(t, is.Equal(st.HostIP, "127.0.0.1"))
	assert.Check(t, is.DeepEqual(st.HostIPs, []corev1.HostIP{{IP: "127.0.0.1"}}))
	assert.Assert(t, st.StartTime != nil)
	assert.Check(t, st.StartTime.Equal(&r.startTime))
	assert.Check(t, is.Equal(st.QOSClass, corev1.PodQOSBurstable), "QOSClass is immutable: the node must report the API's")
	var types []corev1.PodConditionType
	for _, c := range st.Conditions {
		types = append(types, c.Type)
	}
	assert.Check(t, is.DeepEqual(types, []corev1.PodConditionType{
		corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady,
	}))
}

func TestStatusKeepsLastTransitionTime(t *testing.T) {
	t.Parallel()
	c := &containerRun{}
	r := bareRun(c)

	first := r.status()
	t1 := conditionTimes(first)
	assert.Check(t, is.Equal(condition(&corev1.Pod{Status: first}, corev1.PodReady).Status, corev1.ConditionFalse))
	for typ, tm := range t1 {
		assert.Check(t, !tm.IsZero(), "condition %s has no lastTransitionTime", typ)
	}

	time.Sleep(5 * time.Millisecond)
	second := r.status()
	assert.Check(t, is.DeepEqual(conditionTimes(second), t1), "nothing changed, so no time moves")

	// The container becomes ready: only the readiness conditions move.
	time.Sleep(5 * time.Millisecond)
	r.mu.Lock()
	c.inst, c.started, c.ready = newFakeInstance(nil), metav1.Now(), true
	r.mu.Unlock()
	third := r.status()
	t3 := conditionTimes(third)
	pod3 := &corev1.Pod{Status: third}
	assert.Check(t, is.Equal(condition(pod3, corev1.PodReady).Status, corev1.ConditionTrue))
	assert.Check(t, is.Equal(condition(pod3, corev1.PodReady).Reason, ""))
	assert.Check(t, is.Equal(condition(pod3, corev1.ContainersReady).Status, corev1.ConditionTrue))
	for _, typ := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized} {
		assert.Check(t, t3[typ].Time.Equal(t1[typ].Time), "%s moved without changing", typ)
	}
	for _, typ := range []corev1.PodConditionType{corev1.ContainersReady, corev1.PodReady} {
		assert.Check(t, t1[typ].Time.Before(t3[typ].Time), "%s changed but kept its time", typ)
	}

	time.Sleep(5 * time.Millisecond)
	assert.Check(t, is.DeepEqual(conditionTimes(r.status()), t3))

	// And back: not ready again is a new transition.
	time.Sleep(5 * time.Millisecond)
	r.mu.Lock()
	c.ready = false
	r.mu.Unlock()
	t5 := conditionTimes(r.status())
	assert.Check(t, t3[corev1.PodReady].Time.Before(t5[corev1.PodReady].Time))
	assert.Check(t, t5[corev1.PodScheduled].Time.Equal(t1[corev1.PodScheduled].Time))
}

// An update keeps the status the node derived, so transition times survive it.
func TestUpdatePodKeepsTransitionTimes(t *testing.T) {
	t.Parallel()
	h, _, pod, _ := startFakePod(t, corev1.RestartPolicyAlways)
	before := conditionTimes(h.waitPod(pod, "Ready", func(p *corev1.Pod) bool {
		return isRunning(p) && p.Status.ContainerStatuses[0].Ready
	}).Status)
	time.Sleep(5 * time.Millisecond)
	upd := pod.DeepCopy()
	upd.Annotations = map[string]string{"a": "b"}
	assert.NilError(t, h.p.UpdatePod(t.Context(), upd))
	assert.Check(t, is.DeepEqual(conditionTimes(h.pod(pod).Status), before))
}

func TestStatusPhase(t *testing.T) {
	t.Parallel()
	running := func() *containerRun { return &containerRun{inst: newFakeInstance(nil), started: metav1.Now()} }
	exited := func(code int32) *containerRun {
		return &containerRun{done: &corev1.ContainerStateTerminated{ExitCode: code}}
	}
	backOff := func() *containerRun {
		return &containerRun{
			restarts: 1,
			last:     &corev1.ContainerStateTerminated{ExitCode: 2},
			waiting:  &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"},
		}
	}
	creating := func() *containerRun { return &containerRun{} }

	for _, tc := range []struct {
		name       string
		containers []*containerRun
		fail       string
		want       corev1.PodPhase
	}{
		{"creating", []*containerRun{creating()}, "", corev1.PodPending},
		{"running", []*containerRun{running()}, "", corev1.PodRunning},
		{"one running one creating", []*containerRun{running(), creating()}, "", corev1.PodRunning},
		{"restarting after an exit", []*containerRun{backOff()}, "", corev1.PodRunning},
		{"one exited one running", []*containerRun{exited(0), running()}, "", corev1.PodRunning},
		{"all succeeded", []*containerRun{exited(0), exited(0)}, "", corev1.PodSucceeded},
		{"one failed", []*containerRun{exited(0), exited(3)}, "", corev1.PodFailed},
		{"cannot run", []*containerRun{creating()}, "NoRunner", corev1.PodFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bareRun(tc.containers...)
			r.failReason, r.failMsg = tc.fail, "msg"
			st := r.status()
			assert.Check(t, is.Equal(st.Phase, tc.want))
			assert.Check(t, is.Len(st.ContainerStatuses, len(tc.containers)))
			if tc.fail != "" {
				assert.Check(t, is.Equal(st.Reason, tc.fail))
				assert.Check(t, is.Equal(st.Message, "msg"))
			}
		})
	}
}

func TestStatusContainerStates(t *testing.T) {
	t.Parallel()
	started := metav1.NewTime(time.Now().Add(-time.Minute))
	last := &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}
	r := bareRun(
		&containerRun{inst: newFakeInstance(nil), started: started, ready: true, restarts: 3, last: last},
		&containerRun{waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}, restarts: 1, last: last},
		&containerRun{done: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}},
		&containerRun{},
	)
	st := r.status()
	assert.Assert(t, is.Len(st.ContainerStatuses, 4))

	run := st.ContainerStatuses[0]
	assert.Assert(t, run.State.Running != nil)
	assert.Check(t, run.State.Running.StartedAt.Equal(&started))
	assert.Check(t, run.Ready)
	assert.Check(t, run.Started != nil && *run.Started)
	assert.Check(t, is.Equal(run.RestartCount, int32(3)))
	assert.Check(t, is.DeepEqual(run.LastTerminationState.Terminated, last))
	assert.Check(t, is.Equal(run.Image, fakeImage))
	assert.Check(t, is.Equal(run.ImageID, fakeImage))

	wait := st.ContainerStatuses[1]
	assert.Assert(t, wait.State.Waiting != nil)
	assert.Check(t, is.Equal(wait.State.Waiting.Reason, "CrashLoopBackOff"))
	assert.Check(t, !wait.Ready)

	done := st.ContainerStatuses[2]
	assert.Assert(t, done.State.Terminated != nil)
	assert.Check(t, is.Equal(done.State.Terminated.Reason, "Completed"))

	fresh := st.ContainerStatuses[3]
	assert.Assert(t, fresh.State.Waiting != nil)
	assert.Check(t, is.Equal(fresh.State.Waiting.Reason, "ContainerCreating"))

	// Not every container is ready: neither is the pod.
	assert.Check(t, is.Equal(condition(&corev1.Pod{Status: st}, corev1.PodReady).Status, corev1.ConditionFalse))
}

func TestContainerEnv(t *testing.T) {
	t.Setenv("SANDBOXTEST_NOT_PASSED", "secret")
	spec := corev1.Container{Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "LANG", Value: "pod"}}}
	env := containerEnv(spec, Image{Env: []string{"LANG=C.UTF-8", "IMAGE=1"}}, 1000)
	assert.Check(t, is.DeepEqual(env, []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "LANG=pod", "IMAGE=1", "A=1",
	}), "nothing of the node's environment; the pod's value wins over the image's")
	env = containerEnv(corev1.Container{Env: []corev1.EnvVar{{Name: "HOME", Value: "/home/x"}}}, Image{}, 0)
	assert.Check(t, is.Contains(env, "HOME=/home/x"))
	assert.Check(t, is.Equal(containerEnv(corev1.Container{}, Image{}, 0)[1], "HOME=/root"))
}

func TestFirstProbeWait(t *testing.T) {
	t.Parallel()
	exec := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	tcp := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8888)}}}
	assert.Check(t, is.Equal(firstProbeWait(exec, 1), 50*time.Millisecond), "an exec probe starts a process each time")
	assert.Check(t, is.Equal(firstProbeWait(tcp, 1), time.Millisecond))
	assert.Check(t, is.Equal(firstProbeWait(tcp, 9), time.Millisecond))
	assert.Check(t, is.Equal(firstProbeWait(tcp, 10), 5*time.Millisecond), "a server slow to listen is polled less often")
}
