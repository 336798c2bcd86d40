package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/icmd"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentsandbox/go-sandboxtest/internal/localstate"
)

// TestLocalUp: two `local up` at once over a killed cluster's state give
// one new cluster (one serving process, not the stale pid), both print its
// kubeconfig, exactly one finds the other's; then env, status (table and
// -o json) and a third up see it.
func TestLocalUp(t *testing.T) {
	c := localCluster(t)
	want := "export KUBECONFIG=" + c.kubeconfig + "\n"
	a, b := c.ups[0], c.ups[1]
	assert.Check(t, is.Equal(a.Stdout(), want))
	assert.Check(t, is.Equal(b.Stdout(), want))
	assert.Check(t, strings.Contains(a.Stderr(), "already runs") != strings.Contains(b.Stderr(), "already runs"),
		"exactly one up should find the other's cluster:\n%s\n---\n%s", a.Stderr(), b.Stderr())
	assert.Check(t, is.Contains(a.Stderr()+b.Stderr(), "local cluster up in"))

	pids := servePids(t, c.dir)
	assert.Assert(t, is.Len(pids, 1))
	assert.Check(t, pids[0] != c.stalePid)
	data, err := os.ReadFile(filepath.Join(c.dir, localstate.PidFile))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(strings.TrimSpace(string(data)), strconv.Itoa(pids[0])))
	info, err := os.Stat(c.dir)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(info.Mode().Perm(), os.FileMode(0o700)))
	for _, name := range []string{localstate.LogFile, localstate.PidFile, localstate.ReadyFile, localstate.KubeconfigFile} {
		info, err := os.Stat(filepath.Join(c.dir, name))
		if assert.Check(t, err) {
			assert.Check(t, is.Equal(info.Mode().Perm(), os.FileMode(0o600)), name)
		}
	}
	cfg, err := clientcmd.LoadFromFile(c.kubeconfig)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cfg.CurrentContext, "sandboxtest-local"))

	sandboxtestSetup(nil, "local", "up", "--dir", c.dir).Assert(t, icmd.Expected{Out: want, Err: "already runs"})
	sandboxtestSetup(nil, "local", "env", "--dir", c.dir).Assert(t, icmd.Expected{Out: want})

	res := sandboxtestSetup(nil, "local", "status", "--dir", c.dir)
	res.Assert(t, icmd.Expected{Out: "state:      ready"})
	assert.Check(t, is.Contains(res.Stdout(), "nodes:      1"))

	res = sandboxtestSetup(nil, "local", "status", "--dir", c.dir, "-o", "json")
	res.Assert(t, icmd.Success)
	var st LocalStatus
	assert.NilError(t, json.Unmarshal([]byte(res.Stdout()), &st), res.Stdout())
	assert.Check(t, is.DeepEqual(st, LocalStatus{TypeMeta: typeMeta("LocalStatus"), Dir: c.dir, State: "ready", Pid: pids[0],
		Server: cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server, Kubeconfig: c.kubeconfig, Nodes: 1, Pods: st.Pods}))
	assert.Check(t, st.Pods > 0, "no pods: %+v", st)
}

// TestLocalStatusStale: a directory whose serving process was killed (a
// free lock beside its pid file) is stopped, with exit 1, in both formats.
func TestLocalStatusStale(t *testing.T) {
	dir := t.TempDir()
	assert.NilError(t, localstate.Mark(dir))
	for name, content := range map[string]string{localstate.LockFile: "", localstate.PidFile: strconv.Itoa(os.Getpid()), localstate.ReadyFile: "x"} {
		assert.NilError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	sandboxtestSetup(nil, "local", "status", "--dir", dir).Assert(t, icmd.Expected{ExitCode: exitFailed, Out: "state:      stopped", Err: "run: sandboxtest-setup local up"})
	res := sandboxtestSetup(nil, "local", "status", "--dir", dir, "-o", "yaml")
	res.Assert(t, icmd.Expected{ExitCode: exitFailed})
	st := LocalStatus{}
	assert.NilError(t, yamlUnmarshal(res.Stdout(), &st))
	assert.Check(t, is.DeepEqual(st, LocalStatus{TypeMeta: typeMeta("LocalStatus"), Dir: dir, State: "stopped", Problem: st.Problem}))
}

func TestLocalBadInput(t *testing.T) {
	dir := t.TempDir()
	sandboxtestSetup(nil, "local", "env", "--dir", dir).Assert(t, icmd.Expected{ExitCode: exitFailed, Err: "no ready local cluster in " + dir})
	sandboxtestSetup(nil, "local", "down", "--dir", dir).Assert(t, icmd.Expected{Err: "no local cluster runs"}) // nothing running is not an error
	res := sandboxtestSetup(nil, "local", "sideways")
	res.Assert(t, icmd.Expected{ExitCode: exitUsage, Err: `unknown command "sideways" for "sandboxtest-setup local"`})
	assert.Check(t, is.Contains(res.Stderr(), "up"))
	sandboxtestSetup(nil, "local", "stauts").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: `unknown command "stauts" for "sandboxtest-setup local"; did you mean "status"?`})
	sandboxtestSetup(nil, "local", "up", "--no-such-flag").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: "unknown flag: --no-such-flag"})
	sandboxtestSetup(nil, "local", "status", "--dir", dir, "extra").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: `local status takes no arguments (got ["extra"])`})
	sandboxtestSetup(nil, "local", "status", "-o", "table").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: `"table" is not an output format; use json or yaml`})
}

func TestLocalHelp(t *testing.T) {
	res := sandboxtestSetup(nil, "local", "up", "--help")
	res.Assert(t, icmd.Expected{Out: "--dir string"})
	assert.Check(t, is.Contains(res.Stdout(), "--timeout duration"))
	assert.Check(t, is.Contains(res.Stdout(), "(default 30m0s)"))
	// internal/localserve starts the cluster with exactly these flags.
	res = sandboxtestSetup(nil, "local", "serve", "--help")
	for _, f := range []string{"--dir string", "--exit-with-stdin", "--remove-dir"} {
		assert.Check(t, is.Contains(res.Stdout(), f))
	}
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
	check := func(res *icmd.Result, named string) {
		t.Helper()
		res.Assert(t, icmd.Expected{ExitCode: exitFailed, Err: named + " is not a local cluster's state directory"})
		assert.Check(t, is.Contains(res.Stderr(), "nothing was touched"))
		for name, content := range files {
			data, err := os.ReadFile(filepath.Join(dir, name))
			assert.Check(t, err)
			assert.Check(t, is.Equal(string(data), content))
		}
	}
	check(sandboxtestSetup(nil, "local", "down", "--dir", dir), dir)
	check(icmd.RunCmd(icmd.Command(mustExecutable(t), "local", "down", "--dir", "."), icmd.Dir(dir), icmd.WithEnv(append(os.Environ(), cliEnv+"=1")...)), ".")

	// up refuses it too rather than mixing its state with these files.
	sandboxtestSetup(nil, "local", "up", "--dir", dir).Assert(t, icmd.Expected{ExitCode: exitFailed, Err: "nothing was touched"})
	_, err := os.Stat(filepath.Join(dir, localstate.MarkerFile))
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
