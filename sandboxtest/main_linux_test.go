package sandboxtest_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	"gotest.tools/v3/poll"

	"github.com/agentsandbox/go-sandboxtest/internal/localserve"
	"github.com/agentsandbox/go-sandboxtest/internal/localstate"
	"github.com/agentsandbox/go-sandboxtest/sandboxtest"
)

// killChildEnv marks the test binary that TestKilledTestBinaryLeavesNoCluster
// runs, then kills.
const killChildEnv = "SANDBOXTEST_TEST_KILL_CHILD"

// killChildLine starts the line in which the child says what it runs.
const killChildLine = "kill-child: "

type killChildReport struct {
	Dir string // the state directory of the cluster its Main started
}

// TestKillChild is the suite of the killed child: Main has started a local
// cluster of its own; the test adds a sandbox, says where the cluster lives
// and waits to be killed.
func TestKillChild(t *testing.T) {
	if os.Getenv(killChildEnv) == "" {
		t.Skip("run by TestKilledTestBinaryLeavesNoCluster")
	}
	sb := sandboxtest.New(t, template)
	sb.RunOK("true")
	data, _ := json.Marshal(killChildReport{Dir: filepath.Dir(os.Getenv("KUBECONFIG"))})
	fmt.Printf("%s%s\n", killChildLine, data)
	select {} // until killed
}

// TestKilledTestBinaryLeavesNoCluster runs a test binary whose Main starts
// its own local cluster (a `local serve` child), SIGKILLs it once a sandbox
// runs, and checks that every process of that cluster is gone and its state
// directory removed.
func TestKilledTestBinaryLeavesNoCluster(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("in the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$")
	cmd.Env = append(os.Environ(), killChildEnv+"=1", "SANDBOXTEST_LOCAL=1", "KUBECONFIG=",
		"SANDBOXTEST_LOCAL_DIR="+t.TempDir()) // an empty dir: no `local up` cluster to reuse
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	assert.NilError(t, err)
	assert.NilError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), killChildLine); ok {
				lines <- l
			}
		}
		close(lines)
	}()
	var rep killChildReport
	select {
	case l, ok := <-lines:
		assert.Assert(t, ok, "the child exited without starting its cluster:\n%s", stderr.String())
		assert.NilError(t, json.Unmarshal([]byte(l), &rep))
	case <-time.After(15 * time.Minute):
		t.Fatalf("the child did not report a running cluster within 15m; its stderr:\n%s", stderr.String())
	}
	assert.Assert(t, strings.HasPrefix(filepath.Base(rep.Dir), localserve.DirPrefix), "the child reused a cluster (%s) instead of starting one", rep.Dir)
	servePid, ok := localstate.ServingPid(rep.Dir)
	assert.Assert(t, ok, "no serving process in %s", rep.Dir)

	procs := descendants(cmd.Process.Pid)
	names := map[string]bool{}
	for _, p := range procs {
		names[p.comm] = true
	}
	assert.Assert(t, procs[servePid].comm != "", "serve process %d is not a descendant of the test binary: %v", servePid, names)
	// comm is cut at 15 bytes. The sandbox runtimes run inside serve, the
	// scheduler inside kube-controller-manager.
	for _, want := range []string{"sandboxtest-set", "etcd", "kube-apiserver", "kube-controller", "agent-sandbox-c", "sandbox-router"} {
		assert.Assert(t, names[want], "no %s under the test binary: %v", want, names)
	}

	assert.NilError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		for pid, p := range procs {
			if p.alive(pid) {
				return poll.Continue("process %d (%s) of the killed binary's cluster still runs", pid, p.cmdline)
			}
		}
		if pid, cmdline := processMentioning(rep.Dir); pid != 0 {
			return poll.Continue("process %d (%s) still uses %s", pid, cmdline, rep.Dir)
		}
		if _, err := os.Stat(rep.Dir); err == nil {
			return poll.Continue("%s still exists", rep.Dir)
		}
		return poll.Success()
	}, poll.WithTimeout(90*time.Second), poll.WithDelay(100*time.Millisecond))
}

// proc is what identifies a process across time: pid reuse gives another start time.
type proc struct {
	comm, cmdline string
	start         string // field 22 of /proc/pid/stat
}

func (p proc) alive(pid int) bool {
	q, ok := readProc(pid)
	return ok && q.start == p.start && localstate.ProcessAlive(pid)
}

func readProc(pid int) (proc, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, false
	}
	i := bytes.LastIndexByte(data, ')')
	fields := strings.Fields(string(data[i+1:])) // state ppid ... ; starttime is the 20th after ')'
	if i < 0 || len(fields) < 20 {
		return proc{}, false
	}
	comm := string(data[bytes.IndexByte(data, '(')+1 : i])
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return proc{comm: comm, cmdline: string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})), start: fields[19]}, true
}

func ppid(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(fields[1])
	return n
}

func allPids() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// descendants lists the processes below root (not root itself).
func descendants(root int) map[int]proc {
	children := map[int][]int{}
	for _, pid := range allPids() {
		children[ppid(pid)] = append(children[ppid(pid)], pid)
	}
	out := map[int]proc{}
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if info, ok := readProc(c); ok {
				out[c] = info
			}
			queue = append(queue, c)
		}
	}
	return out
}

// processMentioning finds a process whose command line names dir.
func processMentioning(dir string) (int, string) {
	for _, pid := range allPids() {
		if p, ok := readProc(pid); ok && strings.Contains(p.cmdline, dir) {
			return pid, p.cmdline
		}
	}
	return 0, ""
}
