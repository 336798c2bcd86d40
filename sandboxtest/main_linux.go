package sandboxtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentsandbox/go-sandboxtest/connect"
	"github.com/agentsandbox/go-sandboxtest/internal/localserve"
	"github.com/agentsandbox/go-sandboxtest/internal/localstate"
	"github.com/agentsandbox/go-sandboxtest/internal/setupbin"
)

// startLocal returns the kubeconfig of the local cluster that `sandboxtest-setup
// local up` runs, or starts one in a child process (`sandboxtest-setup local
// serve`) that stops with this one, and returns what stops it.
func startLocal(ctx context.Context) (kubeconfig string, stop func(), err error) {
	noop := func() {}
	if dir, err := localstate.DefaultDir(); err == nil {
		if pid, ok := localstate.ServingPid(dir); ok {
			if kc, ok := localstate.ReadyKubeconfig(dir); ok && reachable(kc) == nil {
				stderrProgressf("sandboxtest: using the local cluster in %s (pid %d)", dir, pid)
				return kc, noop, nil
			}
		}
	}
	for _, d := range localserve.Sweep() {
		stderrProgressf("sandboxtest: removed %s, left by a local cluster that was killed", d)
	}
	// Lines while something slow happens (builds, "still ..." every 15 s)
	// are not routine: they show even when Quiet.
	slow, closeSlow := slowWorkLog()
	defer closeSlow()
	setup, err := setupbin.Ensure(ctx, setupbin.Options{Log: slow})
	if err != nil {
		return "", nil, err
	}
	log := slow
	if Quiet() {
		log = io.Discard
	}
	start := time.Now()
	srv, err := localserve.Start(ctx, localserve.Options{Setup: setup, Log: log, Waiting: slow})
	if err != nil {
		return "", nil, err
	}
	stderrProgressf("sandboxtest: local cluster up in %s (process %d, state in %s); it stops with this test binary", time.Since(start).Round(100*time.Millisecond), srv.Pid, srv.Dir)
	return srv.Kubeconfig, func() {
		connect.CloseShared() // the tunnel goes before its cluster
		if err := srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}, nil
}

// slowWorkLog is where the start of a local cluster reports (a first build
// takes minutes): standard error, and also the terminal when go test holds
// standard error back until the package ends (no -v, and standard error is
// not a terminal), so that a first run does not look hung.
func slowWorkLog() (io.Writer, func()) {
	if fi, err := os.Stderr.Stat(); err != nil || fi.Mode()&os.ModeCharDevice != 0 || testing.Verbose() {
		return os.Stderr, func() {}
	}
	tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0)
	if err != nil { // no controlling terminal: CI, cron
		return os.Stderr, func() {}
	}
	return io.MultiWriter(os.Stderr, tty), func() { tty.Close() }
}

// reachable asks the API server in kubeconfig for its version.
func reachable(kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	_, err = dc.ServerVersion()
	return err
}
