package main

import (
	"bytes"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	"k8s.io/client-go/tools/clientcmd"
)

func TestLocalUpStatusEnvDown(t *testing.T) {
	dir := t.TempDir()
	t.Cleanup(func() { cli(t, "local", "down", "--dir", dir) })

	out, errOut, code := cli(t, "local", "up", "--dir", dir)
	assert.Equal(t, code, 0, errOut)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	assert.Check(t, is.Equal(out, "export KUBECONFIG="+kubeconfig+"\n"))
	assert.Check(t, is.Contains(errOut, "local cluster up in"))

	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cfg.CurrentContext, "sandboxtest-local"))
	server, err := url.Parse(cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server)
	assert.NilError(t, err)
	data, err := os.ReadFile(filepath.Join(dir, "serve.pid"))
	assert.NilError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	assert.NilError(t, err)

	// A second up finds the running cluster instead of starting another.
	out, errOut, code = cli(t, "local", "up", "--dir", dir)
	assert.Equal(t, code, 0, errOut)
	assert.Check(t, is.Equal(out, "export KUBECONFIG="+kubeconfig+"\n"))
	assert.Check(t, is.Contains(errOut, "already runs"))

	out, _, code = cli(t, "local", "env", "--dir", dir)
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Equal(out, "export KUBECONFIG="+kubeconfig+"\n"))

	out, _, code = cli(t, "local", "status", "--dir", dir)
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(out, "state:      ready"))
	assert.Check(t, is.Contains(out, "nodes:      1"))

	_, errOut, code = cli(t, "local", "down", "--dir", dir)
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(errOut, "stopped"))
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if syscall.Kill(pid, 0) == nil {
			return poll.Continue("serving process %d still alive", pid)
		}
		if c, err := net.DialTimeout("tcp", server.Host, time.Second); err == nil {
			c.Close()
			return poll.Continue("kube-apiserver %s still listening", server.Host)
		}
		return poll.Success()
	}, poll.WithTimeout(10*time.Second))
	_, err = os.Stat(kubeconfig)
	assert.Check(t, os.IsNotExist(err), "kubeconfig left behind")

	out, errOut, code = cli(t, "local", "status", "--dir", dir)
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(out, "state:      stopped"))
	assert.Check(t, is.Contains(errOut, "sandboxtest-setup local up"))
}

func TestLocalBadInput(t *testing.T) {
	dir := t.TempDir()
	_, errOut, code := cli(t, "local", "env", "--dir", dir)
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(errOut, "no ready local cluster in "+dir))
	assert.Check(t, is.Contains(errOut, "run: sandboxtest-setup local up"))

	_, errOut, code = cli(t, "local", "down", "--dir", dir)
	assert.Check(t, is.Equal(code, 0), "down with nothing running is not an error")
	assert.Check(t, is.Contains(errOut, "no local cluster runs"))

	_, errOut, code = cli(t, "local", "sideways")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(errOut, `unknown command "sideways"`))
	assert.Check(t, is.Contains(errOut, "up "))

	_, errOut, code = cli(t, "local", "up", "--no-such-flag")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(errOut, "flag provided but not defined: -no-such-flag"))
}

func TestHelpListsFlagsWithDefaults(t *testing.T) {
	out, _, code := cli(t, "--help")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(out, "local"))
	_, errOut, code := cli(t, "local", "up", "--help")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(errOut, "-dir"))
	assert.Check(t, is.Contains(errOut, "-timeout"))
	assert.Check(t, is.Contains(errOut, "(default 30m0s)"))
}

// TestLocalDownLeavesForeignDir: down on a directory that is not a
// cluster's (no marker) refuses, names it, and touches none of its files,
// not even those named like a cluster's; also through a relative `--dir .`.
func TestLocalDownLeavesForeignDir(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"notes.txt": "mine", "kubeconfig": "mine too", "etcd/member": "data", "serve.pid": "1"}
	for name, content := range files {
		assert.NilError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		assert.NilError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	check := func(errOut string, code int, named string) {
		t.Helper()
		assert.Check(t, is.Equal(code, 1))
		assert.Check(t, is.Contains(errOut, named+" is not a local cluster's state directory"))
		assert.Check(t, is.Contains(errOut, "nothing was touched"))
		for name, content := range files {
			data, err := os.ReadFile(filepath.Join(dir, name))
			assert.Check(t, err)
			assert.Check(t, is.Equal(string(data), content))
		}
	}
	_, errOut, code := cli(t, "local", "down", "--dir", dir)
	check(errOut, code, dir)

	cmd := exec.Command(mustExecutable(t), "local", "down", "--dir", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), cliEnv+"=1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	assert.Assert(t, errors.As(err, &ee), "down --dir . succeeded: %v", err)
	check(errb.String(), ee.ExitCode(), ".")

	// up refuses it too rather than mixing its state with these files.
	_, errOut, code = cli(t, "local", "up", "--dir", dir)
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(errOut, "nothing was touched"))
	_, err = os.Stat(filepath.Join(dir, ".sandboxtest-local-cluster"))
	assert.Check(t, os.IsNotExist(err), "up marked a foreign directory")
}

func mustExecutable(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	assert.NilError(t, err)
	return exe
}

// servePids lists the `local serve` processes for dir.
func servePids(t *testing.T, dir string) []int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	assert.NilError(t, err)
	var pids []int
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if slices.Contains(args, "serve") && slices.Contains(args, dir) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestLocalUpConcurrent: two `local up` at once give one cluster: one
// serving process, and both print its kubeconfig.
func TestLocalUpConcurrent(t *testing.T) {
	dir := t.TempDir()
	t.Cleanup(func() { cli(t, "local", "down", "--dir", dir) })
	type result struct {
		out, errOut string
		code        int
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			out, errOut, code := cli(t, "local", "up", "--dir", dir)
			results <- result{out, errOut, code}
		}()
	}
	a, b := <-results, <-results
	want := "export KUBECONFIG=" + filepath.Join(dir, "kubeconfig") + "\n"
	assert.Check(t, is.Equal(a.code, 0), a.errOut)
	assert.Check(t, is.Equal(b.code, 0), b.errOut)
	assert.Check(t, is.Equal(a.out, want))
	assert.Check(t, is.Equal(b.out, want))
	assert.Check(t, strings.Contains(a.errOut, "already runs") != strings.Contains(b.errOut, "already runs"),
		"exactly one up should find the other's cluster:\n%s\n---\n%s", a.errOut, b.errOut)
	assert.Check(t, is.Len(servePids(t, dir), 1))
}

// TestLocalUpAfterKill: after SIGKILL of the serving process its pid and
// ready files are stale; status says stopped (the lock is free), and the
// next up starts a new cluster instead of returning the dead one.
func TestLocalUpAfterKill(t *testing.T) {
	dir := t.TempDir()
	t.Cleanup(func() { cli(t, "local", "down", "--dir", dir) })
	_, errOut, code := cli(t, "local", "up", "--dir", dir)
	assert.Assert(t, is.Equal(code, 0), errOut)
	pids := servePids(t, dir)
	assert.Assert(t, is.Len(pids, 1))
	old := pids[0]
	info, err := os.Stat(dir)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(info.Mode().Perm(), os.FileMode(0o700)))
	for _, name := range []string{"serve.log", "serve.pid", "ready", "kubeconfig"} {
		info, err := os.Stat(filepath.Join(dir, name))
		if assert.Check(t, err) {
			assert.Check(t, is.Equal(info.Mode().Perm(), os.FileMode(0o600)), name)
		}
	}

	assert.NilError(t, syscall.Kill(old, syscall.SIGKILL))
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if syscall.Kill(old, 0) == nil {
			return poll.Continue("pid %d still alive", old)
		}
		return poll.Success()
	}, poll.WithTimeout(10*time.Second))
	for _, name := range []string{"serve.pid", "ready"} {
		_, err := os.Stat(filepath.Join(dir, name))
		assert.Check(t, err, "%s should be stale, not gone, for this test to mean something", name)
	}
	out, _, code := cli(t, "local", "status", "--dir", dir)
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(out, "state:      stopped"))

	_, errOut, code = cli(t, "local", "up", "--dir", dir)
	assert.Assert(t, is.Equal(code, 0), errOut)
	assert.Check(t, !strings.Contains(errOut, "already runs"), errOut)
	pids = servePids(t, dir)
	assert.Assert(t, is.Len(pids, 1))
	assert.Check(t, pids[0] != old)
	data, err := os.ReadFile(filepath.Join(dir, "serve.pid"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(strings.TrimSpace(string(data)), strconv.Itoa(pids[0])))
	out, _, code = cli(t, "local", "status", "--dir", dir)
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(out, "state:      ready"))
}
