package runtimeserver

import "syscall"

// A new process group lets the whole tree be killed; Pdeathsig takes the
// command down if the server dies without a chance to clean up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

const nonblock = syscall.O_NONBLOCK
