package processnode

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
)

// namedRunner is a Runner that only tells which registration it came from.
type namedRunner string

func (n namedRunner) Start(context.Context, *Container) (Instance, error) {
	return nil, fmt.Errorf("runner %s", string(n))
}

func runnerName(t *testing.T, r Runner) string {
	t.Helper()
	_, err := r.Start(context.Background(), nil)
	assert.Assert(t, err != nil)
	return err.Error()
}

func TestRegistryLookupBySubstring(t *testing.T) {
	t.Parallel()
	reg := &Registry{}
	reg.Register("sandbox-router", namedRunner("router"))
	reg.Register("python-runtime-sandbox", namedRunner("runtime"))

	for _, tc := range []struct {
		image string
		want  string // "" when no runner
	}{
		{"us-central1-docker.pkg.dev/k8s-staging-images/agent-sandbox/sandbox-router:latest-main", "runner router"},
		{"sandbox-router", "runner router"},
		{"registry.example/python-runtime-sandbox@sha256:0123", "runner runtime"},
		{"python-runtime", ""}, // a prefix of a pattern is not the pattern
		{"nginx:1.27", ""},
		{"", ""},
	} {
		r, ok := reg.Lookup(tc.image)
		if tc.want == "" {
			assert.Check(t, !ok, "image %q", tc.image)
			assert.Check(t, r == nil, "image %q", tc.image)
			continue
		}
		if assert.Check(t, ok, "image %q", tc.image) {
			assert.Check(t, is.Equal(runnerName(t, r), tc.want), "image %q", tc.image)
		}
	}
}

func TestRegistryLaterRegistrationWins(t *testing.T) {
	t.Parallel()
	reg := &Registry{}
	reg.Register("runtime", namedRunner("first"))
	reg.Register("runtime", namedRunner("second"))
	reg.Register("python-runtime", namedRunner("specific"))

	r, ok := reg.Lookup("python-runtime-sandbox:v1")
	assert.Assert(t, ok)
	assert.Equal(t, runnerName(t, r), "runner specific")

	r, ok = reg.Lookup("go-runtime:v1") // only the two "runtime" registrations match
	assert.Assert(t, ok)
	assert.Equal(t, runnerName(t, r), "runner second")

	reg.Register("", namedRunner("catch-all")) // the empty pattern matches everything
	r, ok = reg.Lookup("python-runtime-sandbox:v1")
	assert.Assert(t, ok)
	assert.Equal(t, runnerName(t, r), "runner catch-all")
}

func TestRegistryPatternsSorted(t *testing.T) {
	t.Parallel()
	reg := &Registry{}
	assert.Check(t, is.Len(reg.Patterns(), 0))
	in := []string{"zeta", "alpha", "python-runtime-sandbox", "sandbox-router", "beta"}
	for _, p := range in {
		reg.Register(p, namedRunner(p))
	}
	got := reg.Patterns()
	assert.Check(t, sort.StringsAreSorted(got), "%q", got)
	assert.Check(t, is.DeepEqual(got, []string{"alpha", "beta", "python-runtime-sandbox", "sandbox-router", "zeta"}))

	got[0] = "mutated" // the caller's slice is a copy
	assert.Check(t, is.Equal(reg.Patterns()[0], "alpha"))
}

func TestRegistryNoRunnerMessage(t *testing.T) {
	t.Parallel()
	reg := DefaultRegistry("/nonexistent/sandbox-router")
	msg := reg.noRunnerMessage("docker.io/library/nginx:1.27")
	assert.Check(t, is.Contains(msg, `"docker.io/library/nginx:1.27"`))
	assert.Check(t, is.Contains(msg, `"python-runtime-sandbox" or "sandbox-router"`))
	assert.Check(t, is.Contains(msg, "processnode.Registry.Register"))

	reg.Register("my-image", namedRunner("mine"))
	msg = reg.noRunnerMessage("other")
	assert.Check(t, is.Contains(msg, `"my-image" or "python-runtime-sandbox" or "sandbox-router"`))
}

func TestDefaultRegistryMapsBuiltInImages(t *testing.T) {
	t.Parallel()
	reg := DefaultRegistry("/nonexistent/sandbox-router")
	assert.Check(t, is.DeepEqual(reg.Patterns(), []string{RuntimeImagePattern, RouterImagePattern}))
	_, ok := reg.Lookup("registry.k8s.io/agent-sandbox/" + RouterImagePattern + ":v0.1.0")
	assert.Check(t, ok)
	_, ok = reg.Lookup("registry.k8s.io/agent-sandbox/" + RuntimeImagePattern + ":v0.1.0")
	assert.Check(t, ok)
}

func TestContainerPort(t *testing.T) {
	t.Parallel()
	c := &Container{}
	assert.Check(t, is.Equal(c.Port(8888), int32(8888)))
	c.Spec.Ports = []corev1.ContainerPort{{ContainerPort: 0}}
	assert.Check(t, is.Equal(c.Port(8888), int32(8888)))
	c.Spec.Ports = []corev1.ContainerPort{{ContainerPort: 9000}, {ContainerPort: 9001}}
	assert.Check(t, is.Equal(c.Port(8888), int32(9000)))
}

func TestRunnerFuncCallsFunction(t *testing.T) {
	t.Parallel()
	want := &Container{PodIP: "127.0.0.9"}
	inst := newFakeInstance(want)
	var got *Container
	f := RunnerFunc(func(_ context.Context, c *Container) (Instance, error) { got = c; return inst, nil })
	i, err := f.Start(context.Background(), want)
	assert.NilError(t, err)
	assert.Check(t, got == want)
	assert.Check(t, i == Instance(inst))
	inst.exit(4)
	select {
	case <-i.Done():
	case <-time.After(time.Second):
		t.Fatal("Done not closed")
	}
	assert.Check(t, is.Equal(i.ExitCode(), 4))
}
