// Package localserve runs the local cluster in a child process,
// `sandboxtest-setup local serve`, that stops with its parent: when the
// parent stops it, exits, or is killed. The test library uses it so that a
// user's test binary never links the cluster's code.
package localserve

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/localstate"
)

// DirPrefix starts the name of every temporary state directory, in
// os.TempDir(), of a cluster this package runs.
const DirPrefix = "sandboxtest-serve-"

// heartbeat is the longest a wait goes without a line.
const heartbeat = 15 * time.Second

// Options configure Start.
type Options struct {
	// Setup is the sandboxtest-setup binary.
	Setup string
	// Dir is the cluster's state directory, which the child removes on its
	// way down. Default: a new one, DirPrefix in os.TempDir().
	Dir string
	// Log receives the child's output until the cluster is ready (binary
	// builds, components starting). Default: discard.
	Log io.Writer
	// Waiting receives a "still starting" line whenever 15 s pass without
	// output, and the child's last lines if it exits before Stop. Default: discard.
	Waiting io.Writer
	// Timeout bounds the start, a first build of the cluster's binaries
	// included. Default: 30 minutes.
	Timeout time.Duration
}

// Server is a running child serving a local cluster.
type Server struct {
	Dir        string
	Kubeconfig string
	Pid        int

	lifeline *os.File // the write end of the child's stdin: closing it stops the child
	exited   chan struct{}
	exitErr  error
	ready    atomic.Bool
	stopping atomic.Bool
	out      *lastLines
	waiting  io.Writer
	stopOnce sync.Once
	stopErr  error
}

// Start starts `setup local serve` on a state directory and returns once
// the cluster is ready. The child gets SIGTERM when this process dies
// (Linux's parent-death signal) and also stops when its standard input,
// whose other end only this process holds, reaches end of file.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Waiting == nil {
		o.Waiting = io.Discard
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Minute
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", DirPrefix)
		if err != nil {
			return nil, err
		}
		o.Dir = d
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return nil, err
	}
	cmd := exec.Command(o.Setup, "local", "serve", "--dir", o.Dir, "--exit-with-stdin", "--remove-dir")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, outW, outW
	s := &Server{Dir: o.Dir, lifeline: stdinW, exited: make(chan struct{}), out: newLastLines(40), waiting: o.Waiting}
	s.out.live.Store(&o.Log)
	err = spawn(cmd, func(err error) {
		s.exitErr = err
		close(s.exited)
		if s.ready.Load() && !s.stopping.Load() { // before ready, waitReady says it
			s.out.wait()
			fmt.Fprintf(s.waiting, "sandboxtest: the local cluster process (pid %d) exited (%v) before it was stopped; its last lines:\n%s\n", cmd.Process.Pid, err, s.out.String())
		}
	})
	stdinR.Close() // the child has its copies
	outW.Close()
	if err != nil {
		stdinW.Close()
		outR.Close()
		os.RemoveAll(o.Dir)
		return nil, fmt.Errorf("sandboxtest: starting %s local serve: %w", o.Setup, err)
	}
	s.Pid = cmd.Process.Pid
	go s.out.read(outR)

	if err := s.waitReady(ctx, o.Timeout); err != nil {
		s.Stop()
		return nil, err
	}
	// What the child printed before it was ready (its last progress lines)
	// may still be in the pipe: show it, then the tests' output is theirs.
	s.out.catchUp(unread(outR), time.Second)
	discard := io.Discard
	s.out.live.Store(&discard)
	s.ready.Store(true)
	return s, nil
}

// waitReady waits for the ready marker, saying every 15 s of silence that it
// still waits.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastSaid := start
	for {
		if kc, ok := localstate.ReadyKubeconfig(s.Dir); ok {
			s.Kubeconfig = kc
			return nil
		}
		select {
		case <-s.exited:
			s.out.wait() // every line the child wrote
			return fmt.Errorf("sandboxtest: the local cluster process exited (%v) before it was ready; its last lines:\n%s", s.exitErr, s.out.String())
		case <-deadline.C:
			return fmt.Errorf("sandboxtest: the local cluster was not ready after %s (last line: %q); raise go test's -timeout if a first build was still running, or run `sandboxtest-setup local build` first", timeout, s.out.last())
		case <-ctx.Done():
			return fmt.Errorf("sandboxtest: starting the local cluster (last line: %q): %w", s.out.last(), ctx.Err())
		case now := <-tick.C:
			if t := s.out.lastAt(); t.After(lastSaid) {
				lastSaid = t
			}
			if now.Sub(lastSaid) >= heartbeat {
				fmt.Fprintf(s.waiting, "sandboxtest: still starting the local cluster (%s so far; last line: %q)\n", now.Sub(start).Round(time.Second), s.out.last())
				lastSaid = now
			}
		}
	}
}

// Stop stops the child (it stops the cluster's processes and removes its
// state directory), killing it after a minute, and removes what is left.
// Idempotent.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopping.Store(true)
		s.lifeline.Close() // end of file on the child's stdin: it shuts down
		select {
		case <-s.exited:
		case <-time.After(time.Minute):
			killGroup(s.Pid)
			<-s.exited
			s.stopErr = fmt.Errorf("sandboxtest: the local cluster process (pid %d) did not stop within a minute; killed it; its last lines:\n%s", s.Pid, s.out.String())
		}
		if err := os.RemoveAll(s.Dir); err != nil && s.stopErr == nil {
			s.stopErr = err
		}
	})
	return s.stopErr
}

// Sweep removes the state directories, in os.TempDir(), of clusters whose
// serving process died without cleaning up (killed itself), and returns what
// it removed. Only a directory whose lock file exists and is free goes (the
// serving process holds it for its whole life); a directory without one may
// belong to a child about to take it. The lock is held while removing, so
// that no child takes it meanwhile.
func Sweep() []string {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), DirPrefix+"*"))
	var removed []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, localstate.LockFile)); err != nil {
			continue
		}
		lock := localstate.NewLock(d)
		if ok, err := lock.TryLock(); err != nil || !ok {
			continue
		}
		if os.RemoveAll(d) == nil {
			removed = append(removed, d)
		}
		_ = lock.Unlock()
	}
	return removed
}

// lastLines reads the child's output, copies it to live, and keeps the last
// max lines for error messages.
type lastLines struct {
	max  int
	live atomic.Pointer[io.Writer]

	done chan struct{} // closed when the output has been read to its end

	received atomic.Int64 // bytes read from the pipe
	shown    atomic.Int64 // bytes of the lines copied to live

	mu    sync.Mutex
	lines []string
	at    time.Time
}

func newLastLines(max int) *lastLines {
	return &lastLines{max: max, done: make(chan struct{})}
}

func (l *lastLines) read(r io.ReadCloser) {
	defer close(l.done)
	defer r.Close()
	sc := bufio.NewScanner(countingReader{r, &l.received})
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(*l.live.Load(), line)
		l.shown.Add(int64(len(line)) + 1)
		l.mu.Lock()
		l.lines = append(l.lines, line)
		if len(l.lines) > l.max {
			l.lines = l.lines[len(l.lines)-l.max:]
		}
		l.at = time.Now()
		l.mu.Unlock()
	}
}

// catchUp waits, at most within, until the lines holding what was read so
// far plus pending more bytes have been copied to live.
func (l *lastLines) catchUp(pending int64, within time.Duration) {
	target := l.received.Load() + pending
	deadline := time.Now().Add(within)
	for l.shown.Load() < target && time.Now().Before(deadline) {
		select {
		case <-l.done:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// wait waits, at most a few seconds, until the output has been read to its end.
func (l *lastLines) wait() {
	select {
	case <-l.done:
	case <-time.After(5 * time.Second):
	}
}

func (l *lastLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 {
		return "(no output)"
	}
	return "  " + strings.Join(l.lines, "\n  ")
}

func (l *lastLines) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 {
		return ""
	}
	return l.lines[len(l.lines)-1]
}

func (l *lastLines) lastAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.at
}
