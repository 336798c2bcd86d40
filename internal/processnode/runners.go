package processnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/proc"
	"github.com/agentsandbox/go-sandboxtest/internal/runtimeserver"
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

// RouterRunner runs the upstream sandbox-router binary bound to the pod IP.
// The image's own arguments come first; the bind addresses come last so they win.
func RouterRunner(binary string) Runner {
	return RunnerFunc(func(_ context.Context, c *Container) (Instance, error) {
		args := append([]string{}, c.Spec.Args...)
		args = append(args,
			"--http-bind-address", net.JoinHostPort(c.PodIP, "8080"),
			"--health-probe-bind-address", net.JoinHostPort(c.PodIP, "8081"),
			"--metrics-bind-address", net.JoinHostPort(c.PodIP, "9090"),
			"--allow-loopback-pod-ip",
		)
		env := append(append([]string{}, c.Env...), "KUBECONFIG="+c.Kubeconfig)
		p, err := proc.Start(proc.Spec{Name: c.Spec.Name, Path: binary, Args: args, Env: env, Dir: c.Dir, LogPath: c.LogPath})
		if err != nil {
			return nil, err
		}
		return &processInstance{p: p}, nil
	})
}

// processInstance is a container backed by a child process group.
type processInstance struct{ p *proc.Process }

func (i *processInstance) Done() <-chan struct{}          { return i.p.Done() }
func (i *processInstance) Stop(grace time.Duration) error { return i.p.Stop(grace) }
func (i *processInstance) ExitCode() int                  { return exitCode(i.p.ExitErr()) }

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

// RuntimeRunner serves the legacy python runtime API in this process, on
// <podIP>:<first container port, default 8888>, rooted at the container's directory.
func RuntimeRunner() Runner {
	return RunnerFunc(func(_ context.Context, c *Container) (Instance, error) {
		addr := net.JoinHostPort(c.PodIP, strconv.Itoa(int(c.Port(8888))))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("runtime server for %s: %w", c.Spec.Name, err)
		}
		rs := &runtimeserver.Server{Root: c.Dir, Env: c.Env, Log: c.Log}
		srv := &http.Server{Handler: rs.Handler(), ReadHeaderTimeout: 30 * time.Second}
		inst := &serverInstance{rs: rs, srv: srv, done: make(chan struct{})}
		fmt.Fprintf(c.Log, "runtime server listening on http://%s (root %s)\n", addr, c.Dir)
		go func() {
			err := srv.Serve(ln)
			if !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintf(c.Log, "runtime server stopped: %v\n", err)
				inst.code = 1
			}
			close(inst.done)
		}()
		return inst, nil
	})
}

// serverInstance is a container served by goroutines of this process.
type serverInstance struct {
	rs       *runtimeserver.Server
	srv      *http.Server
	done     chan struct{}
	code     int
	stopOnce sync.Once
}

func (i *serverInstance) Done() <-chan struct{} { return i.done }
func (i *serverInstance) ExitCode() int         { return i.code }

func (i *serverInstance) Stop(grace time.Duration) error {
	i.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		i.rs.Close() // running commands end now: a deleted sandbox keeps nothing alive
		if err := i.srv.Shutdown(ctx); err != nil {
			i.srv.Close()
		}
	})
	<-i.done
	return nil
}
