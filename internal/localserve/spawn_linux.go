package localserve

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
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
//
// The parent-death signal fires when the *thread* that forked the child
// ends, not the process (Go issue 27505). So the fork happens on a goroutine
// that locks its thread for good and stays in Wait while the child runs:
// the runtime cannot retire that thread early, and the thread ends (after
// the child) only with the goroutine.
func spawn(cmd *exec.Cmd, done func(error)) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see above
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done(cmd.Wait())
	}()
	return <-started
}

// killGroup kills the child's process group.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
