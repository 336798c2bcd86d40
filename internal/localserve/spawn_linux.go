package localserve

import (
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentsandbox/go-sandboxtest/internal/proc"
)

// unread is how many bytes wait in the pipe r (FIONREAD), 0 if unknown.
func unread(r *os.File) int64 {
	rc, err := r.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }) // FIONREAD
	return int64(n)
}

// spawn starts cmd in its own process group (a ^C aimed at the tests does
// not reach it first) with SIGTERM as its parent-death signal, and calls
// done with the result of Wait.
func spawn(cmd *exec.Cmd, done func(error)) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	return proc.StartLocked(cmd, done)
}

// killGroup kills the child's process group.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
