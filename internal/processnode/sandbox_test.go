package processnode

import (
	"errors"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
)

// On a machine without user namespaces every pod fails at once, saying why
// and how to fix it, and no container is started.
func TestPodFailsWhenSandboxesAreUnavailable(t *testing.T) {
	fr := newFakeRunner()
	h := newHarness(t, registryWith("fake-image", fr))
	h.p.isolated = true
	h.p.sandboxErr = errors.New("sandboxtest: this machine does not let user root create user namespaces; fix: ...")
	pod := testPod(corev1.RestartPolicyAlways)
	h.create(pod)
	got := h.waitPod(pod, "the pod to fail", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	assert.Check(t, is.Equal(got.Status.Reason, "SandboxFailed"))
	assert.Check(t, is.Contains(got.Status.Message, "user namespaces"))
	cs := got.Status.ContainerStatuses[0]
	assert.Assert(t, cs.State.Terminated != nil)
	assert.Check(t, is.Equal(cs.State.Terminated.Reason, "SandboxFailed"))
	assert.Check(t, is.Equal(fr.count(), 0))
	found := false
	for len(h.rec.Events) > 0 {
		if e := <-h.rec.Events; strings.Contains(e, "SandboxFailed") && strings.Contains(e, "user namespaces") {
			found = true
		}
	}
	assert.Check(t, found, "no SandboxFailed event")
}

func TestSandboxUser(t *testing.T) {
	u := func(v int64) *int64 { return &v }
	im := Image{User: 1000, Group: 0}
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
	uid, gid := sandboxUser(pod, im)
	assert.Check(t, is.Equal(uid, int64(1000)), "the image's user")
	assert.Check(t, is.Equal(gid, int64(0)))
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: u(2000), RunAsGroup: u(3000)}
	uid, gid = sandboxUser(pod, im)
	assert.Check(t, is.Equal(uid, int64(2000)), "the pod's over the image's")
	assert.Check(t, is.Equal(gid, int64(3000)))
	pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: u(0)}
	uid, _ = sandboxUser(pod, im)
	assert.Check(t, is.Equal(uid, int64(0)), "the container's over the pod's")
	assert.Check(t, is.Equal(workingDir(corev1.Container{}, Image{}), "/"))
	assert.Check(t, is.Equal(workingDir(corev1.Container{}, Image{WorkingDir: "/app"}), "/app"))
	assert.Check(t, is.Equal(workingDir(corev1.Container{WorkingDir: "/work/"}, Image{WorkingDir: "/app"}), "/work"))
}
