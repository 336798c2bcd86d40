package processnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// Image patterns of the built-in runners.
const (
	RouterImagePattern  = "sandbox-router"
	RuntimeImagePattern = "python-runtime-sandbox"
)

// DefaultRegistry runs router images with the real sandbox-router binary and
// python-runtime images with the built-in runtime server.
func DefaultRegistry(routerBinary string) *Registry {
	r := &Registry{}
	r.Register(RouterImagePattern, RouterRunner(routerBinary))
	r.Register(RuntimeImagePattern, RuntimeRunner())
	return r
}

// RouterRunner runs the upstream sandbox-router binary in the pod, bound to
// the pod IP. The image's own arguments come first; the bind addresses come
// last so they win.
func RouterRunner(binary string) Runner { return routerRunner{binary: binary} }

type routerRunner struct{ binary string }

// Paths of the router image's files inside the pod.
const (
	routerPath     = "/sandbox-router"
	kubeconfigPath = "/etc/sandboxtest/kubeconfig"
)

// Image is distroless/static:nonroot with the binary at /sandbox-router; the
// cluster's kubeconfig stands in for a service account.
func (r routerRunner) Image(c *Container) Image {
	files := []podinit.Mount{{Source: r.binary, Target: routerPath}}
	if c.Kubeconfig != "" {
		files = append(files, podinit.Mount{Source: c.Kubeconfig, Target: kubeconfigPath})
	}
	return Image{User: 65532, Group: 65532, WorkingDir: "/", Files: files}
}

func (r routerRunner) Start(_ context.Context, c *Container) (Instance, error) {
	if c.Sandbox == nil {
		return nil, errors.New("router: the pod has no sandbox")
	}
	path, kubeconfig := routerPath, kubeconfigPath
	if !c.Isolated {
		path, kubeconfig = r.binary, c.Kubeconfig
	}
	args := append([]string{path}, c.Spec.Args...)
	args = append(args,
		"--http-bind-address", net.JoinHostPort(c.PodIP, "8080"),
		"--health-probe-bind-address", net.JoinHostPort(c.PodIP, "8081"),
		"--metrics-bind-address", net.JoinHostPort(c.PodIP, "9090"),
	)
	if !c.Isolated {
		args = append(args, "--allow-loopback-pod-ip") // sandboxes are on the host's loopback then
	}
	env := append(append([]string{}, c.Env...), "KUBECONFIG="+kubeconfig)
	return startInPod(c, podinit.Process{Argv: args, Env: env, Dir: c.Dir})
}

// startInPod starts the container's main process in its pod, its output
// going to the container log.
func startInPod(c *Container, proc podinit.Process) (Instance, error) {
	logf, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	proc.Stdout, proc.Stderr = logf, logf
	p, err := c.Sandbox.Exec(proc)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.Spec.Name, err)
	}
	return &podProcess{p: p}, nil
}

// podProcess is a container whose main process runs in the pod.
type podProcess struct{ p *podinit.Proc }

func (i *podProcess) Done() <-chan struct{} { return i.p.Done() }
func (i *podProcess) ExitCode() int         { return i.p.ExitCode() }
func (i *podProcess) Stop(grace time.Duration) error {
	i.p.Stop(grace)
	return nil
}

// RuntimeRunner serves the legacy python runtime API in the pod, as the
// image's server does, on <podIP>:<first container port, default 8888>,
// rooted at the container's working directory (/app).
func RuntimeRunner() Runner { return runtimeRunner{} }

type runtimeRunner struct{}

// Image is python-runtime-sandbox: python:3.14-slim, WORKDIR /app, USER 1000.
func (runtimeRunner) Image(*Container) Image {
	return Image{User: 1000, WorkingDir: "/app", Env: []string{"LANG=C.UTF-8"}}
}

func (runtimeRunner) Start(_ context.Context, c *Container) (Instance, error) {
	if c.Sandbox == nil {
		return nil, errors.New("runtime server: the pod has no sandbox")
	}
	addr := net.JoinHostPort(c.PodIP, strconv.Itoa(int(c.Port(8888))))
	return startInPod(c, podinit.RuntimeServer(addr, c.Dir, c.Env))
}

// exitCode maps a wait error to a container exit code (128+signal when signalled).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 1
}
