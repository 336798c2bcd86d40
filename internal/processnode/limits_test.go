package processnode

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// scriptRunner runs the container's args as a shell script in its pod.
var scriptRunner = RunnerFunc(func(_ context.Context, c *Container) (Instance, error) {
	return startInPod(c, podinit.Process{Argv: append([]string{"/bin/sh", "-c"}, c.Spec.Args...), Env: c.Env, Dir: c.Dir})
})

// TestPodLimits runs isolated pods under the node's limiter: a fork loop
// stops at the pids limit, an allocation over the memory limit is killed.
func TestPodLimits(t *testing.T) {
	limits := newLimiter(64)
	t.Cleanup(limits.close) // after the harness has stopped the pods
	h := newHarness(t, registryWith("fake-image", scriptRunner))
	h.p.isolated, h.p.limits = true, limits
	t.Logf("limits: %s", h.p.limits.about)
	if h.p.limits.rlim && os.Getuid() == 0 {
		t.Skip("no writable cgroup here, and RLIMIT_NPROC does not bind root:", h.p.limits.about)
	}

	forks := testPod(corev1.RestartPolicyNever)
	forks.Spec.Containers[0].Args = []string{`/usr/bin/python3 -c "
import os, time
n = 0
try:
    while n < 1000:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print('stopped', n, e.errno, flush=True)
    os._exit(0)
"`}
	h.create(forks)
	got := h.waitPod(forks, "the fork loop to end", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	log, _ := os.ReadFile(h.p.get(forks.Namespace, forks.Name).containers[0].logPath)
	assert.Check(t, is.Equal(got.Status.Phase, corev1.PodSucceeded), string(log))
	assert.Check(t, strings.HasPrefix(string(log), "stopped "), "%q", log)

	// Every process of the pod starts in the pod's groups (on v1 the
	// init's spawning thread joins them alone; the init's process stays out).
	cg := testPod(corev1.RestartPolicyNever)
	cg.Spec.Containers[0].Args = []string{"cat /proc/self/cgroup"}
	h.create(cg)
	h.waitPod(cg, "cat to end", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	log, _ = os.ReadFile(h.p.get(cg.Namespace, cg.Name).containers[0].logPath)
	want := []string{""} // v2: the unified hierarchy's line, "0::/path"
	if h.p.limits.v2 == "" {
		want = nil
		for ctl := range h.p.limits.v1 {
			want = append(want, ctl)
		}
	}
	for _, ctl := range want {
		found := false
		for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), ctl) {
				found = true
				assert.Check(t, strings.HasSuffix(parts[2], "/"+string(cg.UID)), "controller %q: %s", ctl, line)
			}
		}
		assert.Check(t, found, "no %q line in %q", ctl, log)
	}

	if h.p.limits.v1["memory"] == "" && h.p.limits.v2 == "" {
		t.Skip("no memory cgroup:", h.p.limits.about)
	}
	mem := testPod(corev1.RestartPolicyNever)
	mem.Spec.Containers[0].Args = []string{`/usr/bin/python3 -c "b = bytearray(256 << 20); print('allocated')"`}
	mem.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
	h.create(mem)
	got = h.waitPod(mem, "the allocation to end", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	log, _ = os.ReadFile(h.p.get(mem.Namespace, mem.Name).containers[0].logPath)
	assert.Check(t, is.Equal(got.Status.Phase, corev1.PodFailed), string(log))
	assert.Check(t, !strings.Contains(string(log), "allocated"), string(log))
}
