// Package proc starts and stops the child processes of sandboxtest (etcd,
// kube-apiserver, controllers, sandbox runtimes, ...).
//
// Every child runs in its own process group, so Stop reaches its descendants
// too, and gets SIGKILL from the kernel when the process that started it dies
// (Linux Pdeathsig), so a crashed or SIGKILLed test leaves no orphans behind.
package proc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec describes a child process.
type Spec struct {
	// Name identifies the process in errors and logs. Default: base name of Path.
	Name string
	// Path is the executable.
	Path string
	// Args are the arguments, without the program name.
	Args []string
	// Env is added to this process's environment (later entries win).
	Env []string
	// Dir is the working directory. Default: the current one.
	Dir string
	// LogPath receives stdout and stderr, appended. Its directory is created.
	// Empty: output is discarded.
	LogPath string
}

// Process is a started child process.
type Process struct {
	spec Spec
	pid  int

	done    chan struct{}
	exitErr error // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// Start starts the process described by spec. Its stdout and stderr go to
// spec.LogPath. The child is the leader of a new process group and is killed
// by the kernel if this process dies.
func Start(spec Spec) (*Process, error) {
	if spec.Name == "" {
		spec.Name = filepath.Base(spec.Path)
	}
	if spec.Path == "" {
		return nil, fmt.Errorf("starting %s: no executable path", spec.Name)
	}
	var logFile *os.File // nil: /dev/null
	if spec.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o755); err != nil {
			return nil, fmt.Errorf("starting %s: log directory: %w", spec.Name, err)
		}
		f, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("starting %s: log file: %w", spec.Name, err)
		}
		logFile = f
	}

	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	if logFile != nil {
		// An *os.File is handed to the child as is: no copying goroutine,
		// so Wait does not hang on descendants that keep the output open.
		cmd.Stdout = logFile
		cmd.Stderr = logFile
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}

	p := &Process{spec: spec, done: make(chan struct{})}
	err := StartLocked(cmd, func(err error) {
		if logFile != nil {
			logFile.Close()
		}
		p.exitErr = err
		close(p.done)
	})
	if err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("starting %s (%s): %w", spec.Name, spec.Path, err)
	}
	p.pid = cmd.Process.Pid
	return p, nil
}

// StartLocked starts cmd and calls waited with the result of its Wait.
// A parent-death signal in cmd.SysProcAttr fires when the *thread* that
// forked the child ends, not the process (Go issue 27505), so the fork
// happens on a goroutine that holds its OS thread until the child has been
// waited for: the runtime cannot retire that thread while the child runs.
func StartLocked(cmd *exec.Cmd, waited func(error)) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waited(cmd.Wait())
	}()
	return <-started
}

// Name is the process's name (Spec.Name).
func (p *Process) Name() string { return p.spec.Name }

// LogPath is the file receiving its output ("" when discarded).
func (p *Process) LogPath() string { return p.spec.LogPath }

// Pid is the process id, which is also its process group id.
func (p *Process) Pid() int { return p.pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitErr is the result of waiting for the process (nil for exit status 0, an
// *exec.ExitError otherwise). It is nil while the process runs.
func (p *Process) ExitErr() error {
	select {
	case <-p.done:
		return p.exitErr
	default:
		return nil
	}
}

// Stop sends SIGTERM to the process group, SIGKILL to the group after grace
// (or at once if grace <= 0), and waits for the process to exit. Group members
// that outlive the leader are killed too. Stop is idempotent and safe for
// concurrent use; it returns an error only if the process could not be ended.
func (p *Process) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() { p.stopErr = p.stop(grace) })
	return p.stopErr
}

func (p *Process) stop(grace time.Duration) error {
	pgid := p.pid
	if !p.Exited() {
		if grace > 0 {
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			t := time.NewTimer(grace)
			select {
			case <-p.done:
			case <-t.C:
			}
			t.Stop()
		}
	}
	// Whatever is left of the group (the leader after the grace period, or
	// descendants that ignored SIGTERM or outlived the leader).
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping %s (pid %d): %w", p.spec.Name, p.pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("stopping %s (pid %d): still running 30s after SIGKILL", p.spec.Name, p.pid)
	}
}

// LogTail returns the last n lines of the process's log ("" if there is none).
func (p *Process) LogTail(n int) string {
	if p == nil || p.spec.LogPath == "" {
		return ""
	}
	return FileTail(p.spec.LogPath, n)
}

// FileTail returns the last n lines of the file at path, reading at most its
// last 256 KiB; "" if it cannot be read.
func FileTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 256 << 10
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := fi.Size() - max
	if off < 0 {
		off = 0
	}
	buf := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(buf, off)
	s := strings.TrimRight(string(buf[:k]), "\n")
	if s == "" || n <= 0 {
		return ""
	}
	lines := strings.Split(s, "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // first line is probably cut
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
