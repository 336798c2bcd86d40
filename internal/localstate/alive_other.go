//go:build !unix

package localstate

import "os"

// ProcessAlive reports whether pid is a running process (on Windows,
// FindProcess fails for a process that is gone).
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}
