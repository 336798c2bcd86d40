//go:build unix && !linux

package runtimeserver

import "syscall"

// Pdeathsig exists only on Linux; elsewhere a dead server leaves the
// command's process group behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

const nonblock = syscall.O_NONBLOCK
