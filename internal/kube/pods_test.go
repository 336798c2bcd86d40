package kube

import (
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestServerPort(t *testing.T) {
	port := func(spec corev1.PodSpec) (string, int32, bool) {
		c, p, ok := ServerPort(&spec)
		name := ""
		if c != nil {
			name = c.Name
		}
		return name, p.ContainerPort, ok
	}
	ctr := func(name string, ports ...corev1.ContainerPort) corev1.Container {
		return corev1.Container{Name: name, Ports: ports}
	}
	for _, c := range []struct {
		what      string
		spec      corev1.PodSpec
		container string
		port      int32
		declared  bool
	}{
		{"no containers", corev1.PodSpec{}, "", 0, false},
		{"no ports", corev1.PodSpec{Containers: []corev1.Container{ctr("a")}}, "a", 0, false},
		{"first container's first port", corev1.PodSpec{Containers: []corev1.Container{
			ctr("a", corev1.ContainerPort{ContainerPort: 9000}, corev1.ContainerPort{ContainerPort: 9001}),
			ctr("b", corev1.ContainerPort{ContainerPort: 8000})}}, "a", 9000, true},
		{"a sidecar's port is not the first container's", corev1.PodSpec{Containers: []corev1.Container{
			ctr("a"), ctr("b", corev1.ContainerPort{ContainerPort: 8000})}}, "a", 0, false},
		{"runtime wins in any container", corev1.PodSpec{Containers: []corev1.Container{
			ctr("a", corev1.ContainerPort{ContainerPort: 9000}),
			ctr("b", corev1.ContainerPort{ContainerPort: 8000}, corev1.ContainerPort{Name: "runtime", ContainerPort: 7000})}}, "b", 7000, true},
	} {
		name, p, ok := port(c.spec)
		assert.Check(t, is.Equal(name, c.container), c.what)
		assert.Check(t, is.Equal(p, c.port), c.what)
		assert.Check(t, is.Equal(ok, c.declared), c.what)
	}
}

func TestPodState(t *testing.T) {
	p := &corev1.Pod{Status: corev1.PodStatus{
		Phase: corev1.PodPending,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/1 nodes are available"},
			{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"},
		},
		ContainerStatuses: []corev1.ContainerStatus{
			{Name: "a", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "no such image"}}},
			{Name: "b", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}},
			{Name: "c", RestartCount: 2, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}},
		},
	}}
	assert.Check(t, is.Equal(PodState(p), "Pending: PodScheduled=False Unschedulable 0/1 nodes are available; "+
		"container a waiting: ErrImagePull no such image; container b creating; container c running, not ready (2 restarts, last exit 1 Error)"))
	assert.Check(t, is.Equal(PodState(&corev1.Pod{}), "(no phase yet)"))
}
