package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/icmd"

	"github.com/agentsandbox/go-sandboxtest/internal/localstate"
)

// cliEnv makes the test binary behave as sandboxtest-setup, so tests (and
// `local up`, which re-executes itself) run the real command.
const cliEnv = "SANDBOXTEST_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	if shared.dir != "" {
		if err := stopShared(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: local down of the shared cluster: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// sandboxtestSetup runs sandboxtest-setup with args in a child process,
// with env added to this process's environment.
func sandboxtestSetup(env []string, args ...string) *icmd.Result {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return icmd.RunCmd(icmd.Command(exe, args...), icmd.WithEnv(append(append(os.Environ(), cliEnv+"=1"), env...)...))
}

// cli runs sandboxtest-setup with args in a child process.
func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cliWithEnv(t, nil, args...)
}

// cliWithEnv is cli with more environment variables for the child.
func cliWithEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	res := sandboxtestSetup(env, args...)
	if res.Error != nil && res.ExitCode == 0 {
		t.Fatalf("sandboxtest-setup %v: %v", args, res.Error)
	}
	return res.Stdout(), res.Stderr(), res.ExitCode
}

// runCLI runs the command tree in-process.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// sharedCluster is the one local cluster of this package's tests. The first
// test that needs it starts it the way users do, with two `local up` at
// once, over the state a killed cluster left behind; TestMain stops it with
// `local down` and checks that nothing of it is left.
type sharedCluster struct {
	dir, kubeconfig string
	ups             [2]*icmd.Result // the two `local up`
	stalePid        int             // the pid the killed cluster's serve.pid named
	err             error
}

var (
	sharedOnce sync.Once
	shared     sharedCluster
)

// localCluster returns the shared cluster, starting it on first use.
func localCluster(t *testing.T) *sharedCluster {
	t.Helper()
	sharedOnce.Do(startShared)
	if shared.err != nil {
		t.Fatalf("starting the shared local cluster: %v", shared.err)
	}
	return &shared
}

func startShared() {
	dir, err := os.MkdirTemp("", "sandboxtest-cmd-")
	if err != nil {
		shared.err = err
		return
	}
	shared.dir, shared.kubeconfig = dir, localstate.KubeconfigPath(dir)
	// A cluster killed by SIGKILL leaves its pid and ready files beside a
	// free lock; the pid may name a live, unrelated process (here: this one).
	shared.stalePid = os.Getpid()
	if err := localstate.Mark(dir); err != nil {
		shared.err = err
		return
	}
	for name, content := range map[string]string{
		localstate.LockFile:       "",
		localstate.PidFile:        strconv.Itoa(shared.stalePid),
		localstate.ReadyFile:      shared.kubeconfig,
		localstate.KubeconfigFile: "stale: a dead cluster's",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			shared.err = err
			return
		}
	}
	var wg sync.WaitGroup
	for i := range shared.ups {
		wg.Go(func() { shared.ups[i] = sandboxtestSetup(nil, "local", "up", "--dir", dir) })
	}
	wg.Wait()
	for _, res := range shared.ups {
		if res.ExitCode != 0 {
			shared.err = fmt.Errorf("local up --dir %s: exit %d\n%s", dir, res.ExitCode, res.Combined())
		}
	}
}

// stopShared runs `local down` on the shared cluster and checks that its
// serving process is gone, its kubeconfig removed and status says stopped.
func stopShared() error {
	defer os.RemoveAll(shared.dir)
	pid, _ := localstate.ServingPid(shared.dir)
	if res := sandboxtestSetup(nil, "local", "down", "--dir", shared.dir); res.ExitCode != 0 {
		return fmt.Errorf("exit %d\n%s", res.ExitCode, res.Combined())
	}
	deadline := time.Now().Add(10 * time.Second)
	for pid != 0 && localstate.ProcessAlive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("serving process %d still alive 10s after local down", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(shared.kubeconfig); !os.IsNotExist(err) {
		return fmt.Errorf("kubeconfig %s left behind (%v)", shared.kubeconfig, err)
	}
	res := sandboxtestSetup(nil, "local", "status", "--dir", shared.dir)
	if err := res.Compare(icmd.Expected{ExitCode: exitFailed, Out: "state:      stopped", Err: "sandboxtest-setup local up"}); err != nil {
		return fmt.Errorf("local status after down: %v", err)
	}
	return nil
}
