package localserve

import (
	"bufio"
	"context"
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

	"github.com/agentsandbox/go-sandboxtest/internal/localstate"
)

// parentEnv makes the test binary a parent that starts the child named by
// setupEnv on the directory parentEnv names, prints the child's pid, and
// waits to be killed.
const (
	parentEnv = "LOCALSERVE_TEST_PARENT_DIR"
	setupEnv  = "LOCALSERVE_TEST_SETUP"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(parentEnv); dir != "" {
		s, err := Start(context.Background(), Options{Setup: os.Getenv(setupEnv), Dir: dir})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(s.Pid)
		time.Sleep(10 * time.Minute) // busy threads come and go; the forking one must stay
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// TestParentDeathSignal: a child that never reads its stdin still stops
// when its parent is SIGKILLed, through the parent-death signal alone,
// though the parent forked it from a goroutine long gone back to its work.
func TestParentDeathSignal(t *testing.T) {
	setup := fakeSetup(t, `trap 'rm -rf "$dir"; exit 0' TERM
echo $$ > "$dir/serve.pid"
echo "$dir/kubeconfig" > "$dir/ready"
while :; do sleep 0.1; done
`)
	dir := filepath.Join(t.TempDir(), "state")
	assert.NilError(t, os.Mkdir(dir, 0o755))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), parentEnv+"="+dir, setupEnv+"="+setup)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	assert.NilError(t, err)
	assert.NilError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	assert.NilError(t, err, stderr.String())
	child, err := strconv.Atoi(strings.TrimSpace(line))
	assert.NilError(t, err)
	assert.Assert(t, localstate.ProcessAlive(child))

	assert.NilError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if localstate.ProcessAlive(child) {
			return poll.Continue("child %d still runs", child)
		}
		if _, err := os.Stat(dir); err == nil {
			return poll.Continue("%s still exists", dir)
		}
		return poll.Success()
	}, poll.WithTimeout(20*time.Second), poll.WithDelay(50*time.Millisecond))
}
