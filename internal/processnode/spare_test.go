package processnode

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"
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
		return h.waitPod(pod, "Ready", func(p *corev1.Pod) bool { return isReady(p) })
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
	procs := append([]int{next}, children(next)...)
	assert.Check(t, len(procs) == 2, "the spare init and its warm server: %v", procs)
	h.p.stopAll(time.Second)
	assert.Check(t, is.Equal(h.p.sparePid(), 0))
	for _, pid := range procs {
		err := syscall.Kill(pid, 0)
		assert.Check(t, err == syscall.ESRCH, "process %d of the spare survives the node: %v", pid, err)
	}
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(e.Name())
			out = append(out, n)
		}
	}
	return out
}
