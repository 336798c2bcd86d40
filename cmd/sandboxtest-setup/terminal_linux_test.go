package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// openPTY opens a pseudo-terminal pair: the test reads the master, the
// child writes to the slave as to a terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	assert.NilError(t, unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	assert.NilError(t, err)
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	assert.NilError(t, err)
	return m, s
}

// TestChecksMarkedOnATerminal: doctor's rows carry ✓/✗ on a terminal and
// ok/FAIL when piped (TestDoctorUnreachableCluster).
func TestChecksMarkedOnATerminal(t *testing.T) {
	kc := unreachableKubeconfig(t)
	master, slave := openPTY(t)
	cmd := exec.Command(mustExecutable(t), "doctor", "--kubeconfig", kc)
	cmd.Env = append(os.Environ(), cliEnv+"=1")
	cmd.Stdout = slave
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	assert.NilError(t, cmd.Start())
	slave.Close() // the child has its copy; the master reads EOF (EIO) once it exits
	var out bytes.Buffer
	_, _ = io.Copy(&out, master)
	err := cmd.Wait()
	var ee *exec.ExitError
	assert.Assert(t, errors.As(err, &ee), "doctor succeeded: %v", err)
	assert.Check(t, is.Equal(ee.ExitCode(), exitUnreachable))
	assert.Check(t, is.Contains(out.String(), "✗ API reachable  https://127.0.0.1:1"), out.String())
}
