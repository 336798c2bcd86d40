package runtimeserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/agentsandbox/go-sandboxtest/internal/shlex"
)

// maxStreamOutput bounds what is kept of each of stdout and stderr. Upstream
// keeps everything, but here the server usually shares a process with the
// rest of the tool, and the Go client refuses responses over 16 MB anyway.
const maxStreamOutput = 64 << 20

var (
	errClosed   = errors.New("sandbox runtime is closed")
	errTimedOut = errors.New("timed out")
)

type execResult struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode int    `json:"exit_code"`
}

// failed is upstream's answer to any exception while running a command.
func failed(err error) execResult {
	return execResult{Stderr: "Failed to execute command: " + err.Error(), ExitCode: 1}
}

// execute runs command without a shell in the root directory. The only
// error it returns is errClosed; every other failure is a result, as
// upstream answers them with HTTP 200.
func (s *Server) execute(ctx context.Context, command string) (execResult, error) {
	args, err := shlex.Split(command)
	if err != nil {
		return failed(err), nil
	}
	if len(args) == 0 {
		return failed(errors.New("empty command")), nil
	}
	env := s.Env
	if env == nil {
		env = os.Environ()
	}
	dir, err := filepath.Abs(s.Root)
	if err != nil {
		return failed(err), nil
	}
	path, err := lookPath(args[0], env, dir)
	if err != nil {
		return failed(err), nil
	}
	timeout := s.ExecTimeout
	if timeout <= 0 {
		timeout = DefaultExecTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errTimedOut)
	defer cancel()

	var stdout, stderr capBuffer
	cmd := &exec.Cmd{
		Path:        path,
		Args:        args,
		Dir:         dir,
		Env:         env,
		Stdout:      &stdout,
		Stderr:      &stderr,
		SysProcAttr: sysProcAttr(),
	}
	pgid, err := s.start(cmd)
	if errors.Is(err, errClosed) {
		return execResult{}, err
	} else if err != nil {
		return failed(err), nil
	}
	// Killing the group rather than the child also takes down whatever
	// the command spawned, which would otherwise keep the pipes open.
	stop := context.AfterFunc(ctx, func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	waitErr := cmd.Wait()
	stop()
	if closed := s.finish(pgid); closed {
		return execResult{}, errClosed
	}
	if context.Cause(ctx) == errTimedOut {
		// Upstream drops the partial output and reports
		// subprocess.TimeoutExpired.
		return failed(fmt.Errorf("Command %q timed out after %v", command, timeout)), nil
	}

	res := execResult{Stdout: stdout.text(), Stderr: stderr.text()}
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
	case errors.As(waitErr, &exitErr):
		// Python reports death by signal N as -N.
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.ExitCode = -int(ws.Signal())
		} else {
			res.ExitCode = exitErr.ExitCode()
		}
	default:
		return failed(waitErr), nil
	}
	if n := stdout.dropped + stderr.dropped; n > 0 {
		res.Stderr += fmt.Sprintf("\n[runtimeserver: output over %d bytes per stream was dropped (%d bytes)]\n", maxStreamOutput, n)
	}
	return res, nil
}

// start starts cmd under the lock so that Close either prevents the start
// or sees the new process group.
func (s *Server) start(cmd *exec.Cmd) (pgid int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	if s.running == nil {
		s.running = make(map[int]struct{})
	}
	s.running[cmd.Process.Pid] = struct{}{}
	return cmd.Process.Pid, nil
}

// finish forgets a process group and reports whether the server was closed.
func (s *Server) finish(pgid int) (closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, pgid)
	return s.closed
}

// Close kills the process group of every running command; /execute fails
// with 503 from then on. Processes a finished command left running in the
// background are not tracked and are left alone, as upstream does.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for pgid := range s.running {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// notFoundError is the text Python's Popen gives for a missing executable.
type notFoundError string

func (e notFoundError) Error() string {
	return fmt.Sprintf("[Errno 2] No such file or directory: '%s'", string(e))
}

// lookPath finds name like Popen does: a name with a '/' is taken relative
// to the working directory (the root), a bare name is searched in the PATH
// of the command's own environment rather than the server's.
func lookPath(name string, env []string, dir string) (string, error) {
	candidates := []string{name}
	if !strings.Contains(name, "/") {
		path := "/bin:/usr/bin" // Python's os.defpath
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				path = v
			}
		}
		candidates = candidates[:0]
		for _, d := range filepath.SplitList(path) {
			candidates = append(candidates, filepath.Join(d, name))
		}
	}
	for _, c := range candidates {
		p := c
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && (fi.Mode()&0o111 != 0 || c == name) {
			// A named file that is not executable is left for exec
			// to reject with "permission denied", as Popen would.
			return p, nil
		}
	}
	return "", notFoundError(name)
}

// capBuffer keeps the first maxStreamOutput bytes and silently drops the
// rest, so the command never sees a write error because of the cap.
type capBuffer struct {
	buf     bytes.Buffer
	dropped int
}

func (b *capBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := maxStreamOutput - b.buf.Len(); len(p) > room {
		b.dropped += len(p) - room
		p = p[:room]
	}
	b.buf.Write(p)
	return n, nil
}

// universalNewlines is what Python's text=True does to the output.
var universalNewlines = strings.NewReplacer("\r\n", "\n", "\r", "\n")

func (b *capBuffer) text() string { return universalNewlines.Replace(b.buf.String()) }
