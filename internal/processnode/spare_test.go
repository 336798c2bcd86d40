package processnode

import (
	"net/http"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/proc"
)

// TestSparePodInit runs python-runtime pods on an isolated node: after the
// first pod's start a spare init waits, the next pod takes it (its runtime
// server, started warm, serves that pod), a new spare follows, and a
// stopped node leaves neither the spare nor its warm server behind.
func TestSparePodInit(t *testing.T) {
	h := newHarness(t, registryWith(RuntimeImagePattern, RuntimeRunner()))
	h.p.isolated = true
	runtimePod := func() *corev1.Pod {
		pod := testPod(corev1.RestartPolicyAlways)
		pod.Spec.Containers[0].Image = RuntimeImagePattern
		h.create(pod)
		return h.waitPod(pod, "Ready", kube.PodReady)
	}
	waitSpare := func(not int) int {
		var pid int
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			if pid = h.p.sparePid(); pid != 0 && pid != not {
				return poll.Success()
			}
			return poll.Continue("no new spare init (last %d)", not)
		}, poll.WithTimeout(10*time.Second), poll.WithDelay(10*time.Millisecond))
		return pid
	}

	runtimePod()
	spare := waitSpare(0)
	second := runtimePod()
	r := h.p.get(second.Namespace, second.Name)
	assert.Check(t, is.Equal(r.sb.Pid(), spare), "the second pod did not take the spare")
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		resp, err := http.Get("http://" + second.Status.PodIP + ":8888/")
		if err != nil {
			return poll.Continue("%v", err)
		}
		resp.Body.Close()
		return poll.Success()
	}, poll.WithTimeout(10*time.Second), poll.WithDelay(10*time.Millisecond))

	next := waitSpare(spare)
	procs := append([]int{next}, proc.Children(next)...)
	assert.Check(t, len(procs) == 2, "the spare init and its warm server: %v", procs)
	h.p.stopAll(time.Second)
	assert.Check(t, is.Equal(h.p.sparePid(), 0))
	for _, pid := range procs {
		err := syscall.Kill(pid, 0)
		assert.Check(t, err == syscall.ESRCH, "process %d of the spare survives the node: %v", pid, err)
	}
}
