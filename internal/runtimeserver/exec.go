package runtimeserver

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/agentsandbox/go-sandboxtest/internal/shlex"
)

// maxStreamJSON bounds each of stdout and stderr as encoded in the response,
// truncation marker included. Upstream keeps everything, so a huge output
// makes the client refuse the whole answer; here both streams and the rest
// of the JSON stay below internal/runtime's DefaultMaxResponseBytes (64 MiB),
// so the caller gets what fits and a line saying it was cut. (The upstream
// Go SDK refuses answers over 16 MB, whole 16 MiB outputs included, which
// this project's own client and tests rely on.)
const maxStreamJSON = 30 << 20

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

	limit := cmp.Or(s.streamLimit, maxStreamJSON)
	stdout, stderr := capBuffer{max: limit}, capBuffer{max: limit}
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

	res := execResult{Stdout: stdout.text("stdout"), Stderr: stderr.text("stderr")}
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

// capBuffer keeps the first max bytes and counts the rest, so the command
// never sees a write error because of the cap.
type capBuffer struct {
	buf     bytes.Buffer
	max     int
	written int64
}

func (b *capBuffer) Write(p []byte) (int, error) {
	b.written += int64(len(p))
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// universalNewlines is what Python's text=True does to the output.
var universalNewlines = strings.NewReplacer("\r\n", "\n", "\r", "\n")

// text is the stream as the response carries it: newlines converted and, if
// its JSON form would pass max bytes, cut at a character boundary and ended
// with a marker line saying so.
func (b *capBuffer) text(name string) string {
	s := universalNewlines.Replace(b.buf.String())
	if b.written == int64(b.buf.Len()) && jsonLen(s) <= b.max {
		return s
	}
	marker := fmt.Sprintf("[runtimeserver: %s truncated here: the command wrote %d bytes, more than a response carries (%d per stream)]\n",
		name, b.written, b.max)
	keep := fitJSON(s, b.max-jsonLen(marker)-jsonLen("\n"))
	if keep != "" && !strings.HasSuffix(keep, "\n") {
		keep += "\n"
	}
	return keep + marker
}

// jsonLen is the length of s inside a JSON string as writeJSON encodes it,
// or a little more (\b and \f are counted as \u0008 and \u000c).
func jsonLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		n += runeJSONLen(r, size)
		i += size
	}
	return n
}

// fitJSON is the longest prefix of s, cut between characters, whose jsonLen
// is at most budget.
func fitJSON(s string, budget int) string {
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if n += runeJSONLen(r, size); n > budget {
			return s[:i]
		}
		i += size
	}
	return s
}

func runeJSONLen(r rune, size int) int {
	switch {
	case r == utf8.RuneError && size == 1: // an invalid byte becomes \ufffd
		return 6
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
		return 2
	case r < 0x20 || r == '\u2028' || r == '\u2029':
		return 6
	}
	return size
}
