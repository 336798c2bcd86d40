package kube

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// PodState words a pod's phase and why it is not Ready, as far as its
// status tells; every message that describes a pod uses it:
//
//	Pending: PodScheduled=False Unschedulable 0/1 nodes are available…
//	Running: container python-runtime running, not ready (2 restarts, last exit 1 Error)
func PodState(p *corev1.Pod) string {
	phase := string(p.Status.Phase)
	if phase == "" {
		phase = "(no phase yet)"
	}
	var parts []string
	if r := strings.TrimSpace(p.Status.Reason + " " + p.Status.Message); r != "" {
		parts = append(parts, r)
	}
	for _, c := range p.Status.Conditions {
		// Ready and ContainersReady only repeat what the containers say below.
		if c.Status == corev1.ConditionTrue || c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
			continue
		}
		if c.Reason != "" || c.Message != "" {
			parts = append(parts, strings.TrimSpace(fmt.Sprintf("%s=%s %s %s", c.Type, c.Status, c.Reason, c.Message)))
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		s := "container " + cs.Name
		switch {
		case cs.State.Waiting != nil:
			if cs.State.Waiting.Reason == "ContainerCreating" && cs.State.Waiting.Message == "" {
				s += " creating"
			} else {
				s += strings.TrimRight(" waiting: "+cs.State.Waiting.Reason+" "+cs.State.Waiting.Message, " ")
			}
		case cs.State.Terminated != nil:
			t := cs.State.Terminated
			s += strings.TrimRight(fmt.Sprintf(" exited %d %s %s", t.ExitCode, t.Reason, t.Message), " ")
		case cs.Ready:
			s += " ready"
		default:
			s += " running, not ready"
		}
		if cs.RestartCount > 0 {
			s += fmt.Sprintf(" (%d restarts", cs.RestartCount)
			if t := cs.LastTerminationState.Terminated; t != nil {
				s += strings.TrimRight(fmt.Sprintf(", last exit %d %s", t.ExitCode, t.Reason), " ")
			}
			s += ")"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return phase
	}
	return phase + ": " + strings.Join(parts, "; ")
}

// PodReady reports whether p's Ready condition is True.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ServerPort is where a pod template's runtime server listens, by one rule
// for everything that needs it: the container port named "runtime" (in any
// container), else the first container's first port. c is the container
// that declares it, or the first container when none does (then declared
// is false and port is 0: the runtime's default applies); c is nil for a
// spec without containers.
func ServerPort(spec *corev1.PodSpec) (c *corev1.Container, port corev1.ContainerPort, declared bool) {
	cs := spec.Containers
	for i := range cs {
		for _, p := range cs[i].Ports {
			if p.Name == "runtime" {
				return &cs[i], p, true
			}
		}
	}
	if len(cs) == 0 {
		return nil, corev1.ContainerPort{}, false
	}
	p, declared := containerServerPort(&cs[0])
	return &cs[0], p, declared
}

// containerServerPort is ServerPort's rule within one container: its port
// named "runtime", else its first port; declared is false when it has none.
func containerServerPort(c *corev1.Container) (port corev1.ContainerPort, declared bool) {
	for _, p := range c.Ports {
		if p.Name == "runtime" {
			return p, true
		}
	}
	if len(c.Ports) == 0 {
		return corev1.ContainerPort{}, false
	}
	return c.Ports[0], true
}
