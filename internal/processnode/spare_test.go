package processnode

import (
	"net/http"
	"os"
	"path/filepath"
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
// first pod's start a spare init waits, with an address of its own; the
// next pod takes it and its address (its runtime server, started warm,
// serves that pod there), a new spare follows, and a stopped node leaves
// neither the spare nor its warm server behind, and frees its address.
func TestSparePodInit(t *testing.T) {
	h := newHarness(t, registryWith(RuntimeImagePattern, RuntimeRunner()))
	h.p.isolated = true
	runtimePod := func() *corev1.Pod {
		pod := testPod(corev1.RestartPolicyAlways)
		pod.Spec.Containers[0].Image = RuntimeImagePattern
		h.create(pod)
		return h.waitPod(pod, "Ready", kube.PodReady)
	}
	waitSpare := func(not int) (int, string) {
		var pid int
		var ip string
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			if pid, ip = h.p.sparePid(); pid != 0 && pid != not {
				return poll.Success()
			}
			return poll.Continue("no new spare init (last %d)", not)
		}, poll.WithTimeout(10*time.Second), poll.WithDelay(10*time.Millisecond))
		return pid, ip
	}
	spareDirs := func() []string { // each spare's root, on which its view was prepared
		entries, _ := os.ReadDir(filepath.Join(h.p.cfg.Dir, "spares"))
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	inUse := func(ip string) bool {
		h.p.ips.mu.Lock()
		defer h.p.ips.mu.Unlock()
		return h.p.ips.used[ip]
	}

	first := runtimePod()
	spare, spareIP := waitSpare(0)
	assert.Check(t, spareIP != "" && spareIP != first.Status.PodIP, "the spare's address %q", spareIP)
	assert.Check(t, inUse(spareIP))
	assert.Check(t, is.DeepEqual(spareDirs(), []string{"spare-1"}))
	second := runtimePod()
	r := h.p.get(second.Namespace, second.Name)
	assert.Check(t, is.Equal(r.sb.Pid(), spare), "the second pod did not take the spare")
	assert.Check(t, is.Equal(second.Status.PodIP, spareIP), "the second pod did not take the spare's address")
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		resp, err := http.Get("http://" + second.Status.PodIP + ":8888/")
		if err != nil {
			return poll.Continue("%v", err)
		}
		resp.Body.Close()
		return poll.Success()
	}, poll.WithTimeout(10*time.Second), poll.WithDelay(10*time.Millisecond))

	next, nextIP := waitSpare(spare)
	assert.Check(t, is.DeepEqual(spareDirs(), []string{"spare-2"}), "the taken spare's directory is left")
	assert.Check(t, nextIP != "" && nextIP != spareIP && inUse(nextIP), "the next spare's address %q", nextIP)
	procs := append([]int{next}, proc.Children(next)...)
	assert.Check(t, len(procs) == 2, "the spare init and its warm server: %v", procs)
	h.p.stopAll(time.Second)
	pid, _ := h.p.sparePid()
	assert.Check(t, is.Equal(pid, 0))
	assert.Check(t, !inUse(nextIP), "the unused spare's address %s is still taken", nextIP)
	assert.Check(t, is.Len(spareDirs(), 0), "the unused spare's directory is left")
	for _, pid := range procs {
		err := syscall.Kill(pid, 0)
		assert.Check(t, err == syscall.ESRCH, "process %d of the spare survives the node: %v", pid, err)
	}
}
