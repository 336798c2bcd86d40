package processnode

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// Container is what a Runner gets to start one container of a pod.
type Container struct {
	Pod        *corev1.Pod
	Spec       corev1.Container
	PodIP      string    // the pod's own loopback address; servers bind it
	Dir        string    // the working directory: inside the pod, or a host folder when not Isolated
	Env        []string  // KEY=VALUE: the image's defaults under the pod spec's env
	Log        io.Writer // the container log that `kubectl logs` reads
	LogPath    string
	Kubeconfig string // for containers that talk to the API server (a host path)
	// Sandbox starts processes inside the pod; Isolated says whether it has
	// namespaces and its own filesystem view.
	Sandbox  *podinit.Sandbox
	Isolated bool
}

// Port returns the container's first declared port, or def when it declares none.
func (c *Container) Port(def int32) int32 {
	if len(c.Spec.Ports) > 0 && c.Spec.Ports[0].ContainerPort > 0 {
		return c.Spec.Ports[0].ContainerPort
	}
	return def
}

// Instance is one running container.
type Instance interface {
	Done() <-chan struct{}
	// ExitCode is valid once Done is closed.
	ExitCode() int
	// Stop asks the container to end, forcing it after grace, and waits.
	Stop(grace time.Duration) error
}

// Runner starts containers of the images it is registered for.
type Runner interface {
	Start(ctx context.Context, c *Container) (Instance, error)
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(ctx context.Context, c *Container) (Instance, error)

// Start calls f.
func (f RunnerFunc) Start(ctx context.Context, c *Container) (Instance, error) { return f(ctx, c) }

// Registry maps images to runners by substring of the image reference.
type Registry struct {
	mu      sync.RWMutex
	entries []registryEntry
}

type registryEntry struct {
	pattern string
	runner  Runner
}

// Register makes runner handle every image whose reference contains pattern.
// Later registrations win over earlier ones.
func (r *Registry) Register(pattern string, runner Runner) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append([]registryEntry{{pattern, runner}}, r.entries...)
}

// Lookup returns the runner for image.
func (r *Registry) Lookup(image string) (Runner, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, e := range r.entries {
		if strings.Contains(image, e.pattern) {
			return e.runner, true
		}
	}
	return nil, false
}

// Patterns lists the registered image patterns, sorted.
func (r *Registry) Patterns() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for _, e := range r.entries {
		out = append(out, e.pattern)
	}
	sort.Strings(out)
	return out
}

// noRunnerMessage says which image has no runner and how to fix it.
func (r *Registry) noRunnerMessage(image string) string {
	return fmt.Sprintf("no runner for image %q on the local process node: images containing %s run here; "+
		"register another with processnode.Registry.Register, or use Kind or a real cluster to run real images",
		image, quoteList(r.Patterns()))
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, " or ")
}
