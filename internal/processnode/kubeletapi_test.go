package processnode

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	utilexec "k8s.io/utils/exec"
)

// runningPod creates a one-container pod on a fresh harness and waits until it runs.
func runningPod(t *testing.T) (*harness, *corev1.Pod, *fakeInstance) {
	t.Helper()
	fr := newFakeRunner()
	h := newHarness(t, registryWith("fake-image", fr))
	pod := testPod(corev1.RestartPolicyAlways)
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "GREETING", Value: "hello"}}
	h.create(pod)
	inst := fr.next(t)
	h.waitPod(pod, "Running", isRunning)
	return h, pod, inst
}

func writeLog(t *testing.T, inst *fakeInstance, s string) {
	t.Helper()
	_, err := io.WriteString(inst.c.Log, s)
	assert.NilError(t, err)
}

func readLogs(t *testing.T, h *harness, pod *corev1.Pod, opts api.ContainerLogOpts) string {
	t.Helper()
	rc, err := h.p.GetContainerLogs(context.Background(), pod.Namespace, pod.Name, "main", opts)
	assert.NilError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	assert.NilError(t, err)
	return string(b)
}

func TestGetContainerLogsTailAndLimit(t *testing.T) {
	t.Parallel()
	h, pod, inst := runningPod(t)
	assert.Check(t, is.Equal(readLogs(t, h, pod, api.ContainerLogOpts{}), ""))

	writeLog(t, inst, "line1\nline2\nline3\nline4\nline5\n")
	for _, tc := range []struct {
		name string
		opts api.ContainerLogOpts
		want string
	}{
		{"all", api.ContainerLogOpts{}, "line1\nline2\nline3\nline4\nline5\n"},
		{"tail 2", api.ContainerLogOpts{Tail: 2}, "line4\nline5\n"},
		{"tail 1", api.ContainerLogOpts{Tail: 1}, "line5\n"},
		{"tail more than there is", api.ContainerLogOpts{Tail: 50}, "line1\nline2\nline3\nline4\nline5\n"},
		{"limit", api.ContainerLogOpts{LimitBytes: 8}, "line1\nli"},
		{"limit beyond", api.ContainerLogOpts{LimitBytes: 1000}, "line1\nline2\nline3\nline4\nline5\n"},
		{"tail then limit", api.ContainerLogOpts{Tail: 2, LimitBytes: 7}, "line4\nl"},
	} {
		assert.Check(t, is.Equal(readLogs(t, h, pod, tc.opts), tc.want), tc.name)
	}

	// A last line without a newline counts as a line.
	writeLog(t, inst, "partial")
	assert.Check(t, is.Equal(readLogs(t, h, pod, api.ContainerLogOpts{Tail: 2}), "line5\npartial"))

	// The container can be named or left empty (the only one), but not wrong.
	rc, err := h.p.GetContainerLogs(context.Background(), pod.Namespace, pod.Name, "", api.ContainerLogOpts{Tail: 1})
	assert.NilError(t, err)
	b, _ := io.ReadAll(rc)
	assert.Check(t, is.Equal(string(b), "partial"))
	_, err = h.p.GetContainerLogs(context.Background(), pod.Namespace, pod.Name, "other", api.ContainerLogOpts{})
	assert.Check(t, errdefs.IsNotFound(err), "%v", err)
	_, err = h.p.GetContainerLogs(context.Background(), pod.Namespace, "no-such-pod", "main", api.ContainerLogOpts{})
	assert.Check(t, errdefs.IsNotFound(err), "%v", err)
}

func TestGetContainerLogsFollow(t *testing.T) {
	t.Parallel()
	h, pod, inst := runningPod(t)
	writeLog(t, inst, "old1\nold2\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := h.p.GetContainerLogs(ctx, pod.Namespace, pod.Name, "main", api.ContainerLogOpts{Follow: true, Tail: 1})
	assert.NilError(t, err)
	defer rc.Close()

	lines := make(chan string, 100)
	readErr := make(chan error, 1)
	go func() {
		br := bufio.NewReader(rc)
		for {
			l, err := br.ReadString('\n')
			if l != "" {
				lines <- l
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case l := <-lines:
			return l
		case <-time.After(2 * time.Second):
			t.Fatal("no log line within 2s")
			return ""
		}
	}

	assert.Check(t, is.Equal(next(), "old2\n"), "the tail comes first")
	writeLog(t, inst, "new1\n")
	assert.Check(t, is.Equal(next(), "new1\n"))
	writeLog(t, inst, "new2\nnew3\n")
	assert.Check(t, is.Equal(next(), "new2\n"))
	assert.Check(t, is.Equal(next(), "new3\n"))

	cancel()
	select {
	case err := <-readErr:
		assert.Check(t, is.ErrorIs(err, io.EOF), "the stream ends cleanly with the context")
	case <-time.After(2 * time.Second):
		t.Fatal("the follow stream did not end with its context")
	}
	select {
	case l := <-lines:
		t.Errorf("unexpected line %q", l)
	default:
	}
}

// attachIO is an api.AttachIO over buffers.
type attachIO struct {
	stdin          io.Reader
	stdout, stderr io.WriteCloser
	tty            bool
}

func (a *attachIO) Stdin() io.Reader            { return a.stdin }
func (a *attachIO) Stdout() io.WriteCloser      { return a.stdout }
func (a *attachIO) Stderr() io.WriteCloser      { return a.stderr }
func (a *attachIO) TTY() bool                   { return a.tty }
func (a *attachIO) Resize() <-chan api.TermSize { return nil }
func newAttach() (*attachIO, *syncBuffer, *syncBuffer) {
	out, errb := &syncBuffer{}, &syncBuffer{}
	return &attachIO{stdout: out, stderr: errb}, out, errb
}

func TestRunInContainerExitCodeAndOutput(t *testing.T) {
	t.Parallel()
	h, pod, inst := runningPod(t)
	ctx := context.Background()

	a, out, errb := newAttach()
	err := h.p.RunInContainer(ctx, pod.Namespace, pod.Name, "main",
		[]string{"sh", "-c", `echo out; echo err >&2; pwd; echo "$GREETING"; exit 3`}, a)
	var ce utilexec.CodeExitError
	assert.Assert(t, errors.As(err, &ce), "%T %v", err, err)
	assert.Check(t, is.Equal(ce.ExitStatus(), 3))
	var ee utilexec.ExitError // what virtual-kubelet's exec handler looks for
	assert.Assert(t, errors.As(err, &ee))
	assert.Check(t, is.Equal(ee.ExitStatus(), 3))
	assert.Check(t, is.Equal(out.String(), "out\n"+inst.c.Dir+"\nhello\n"), "runs in the container's folder and env")
	assert.Check(t, is.Equal(errb.String(), "err\n"))

	a, out, _ = newAttach()
	assert.NilError(t, h.p.RunInContainer(ctx, pod.Namespace, pod.Name, "main", []string{"echo", "fine"}, a))
	assert.Check(t, is.Equal(out.String(), "fine\n"))

	// A TTY exec has no stderr stream: stderr goes to stdout.
	out = &syncBuffer{}
	a = &attachIO{stdout: out, tty: true}
	assert.NilError(t, h.p.RunInContainer(ctx, pod.Namespace, pod.Name, "main", []string{"sh", "-c", "echo to-err >&2"}, a))
	assert.Check(t, is.Equal(out.String(), "to-err\n"))

	// Stdin reaches the command.
	a, out, _ = newAttach()
	a.stdin = strings.NewReader("from stdin\n")
	assert.NilError(t, h.p.RunInContainer(ctx, pod.Namespace, pod.Name, "main", []string{"cat"}, a))
	assert.Check(t, is.Equal(out.String(), "from stdin\n"))

	// Errors that are not exit codes.
	a, _, _ = newAttach()
	err = h.p.RunInContainer(ctx, pod.Namespace, pod.Name, "main", []string{"no-such-command-sandboxtest"}, a)
	assert.Check(t, err != nil && !errors.As(err, &ce), "%v", err)
	err = h.p.RunInContainer(ctx, pod.Namespace, pod.Name, "main", nil, a)
	assert.Check(t, errdefs.IsInvalidInput(err), "%v", err)
	err = h.p.RunInContainer(ctx, pod.Namespace, pod.Name, "nope", []string{"true"}, a)
	assert.Check(t, errdefs.IsNotFound(err), "%v", err)
}

func TestRunInContainerContextKills(t *testing.T) {
	t.Parallel()
	h, pod, _ := runningPod(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	a, _, _ := newAttach()
	start := time.Now()
	// The background sleep keeps stdout open: the whole process group must go.
	err := h.p.RunInContainer(ctx, pod.Namespace, pod.Name, "main", []string{"sh", "-c", "sleep 30 & sleep 30"}, a)
	assert.Check(t, err != nil)
	assert.Check(t, time.Since(start) < 2*time.Second, "took %s", time.Since(start))
}

// An exec whose command ends while the client's stdin stays open (kubectl
// exec -i, an interactive shell after `exit`) must return at once, not when
// the client next types something.
func TestRunInContainerReturnsWithOpenStdin(t *testing.T) {
	t.Parallel()
	h, pod, _ := runningPod(t)
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	a, out, _ := newAttach()
	a.stdin = stdin

	done := make(chan error, 1)
	go func() {
		done <- h.p.RunInContainer(context.Background(), pod.Namespace, pod.Name, "main",
			[]string{"sh", "-c", "read line; echo got $line; exit 4"}, a)
	}()
	_, err := io.WriteString(stdinW, "hello\n")
	assert.NilError(t, err)
	select {
	case err := <-done:
		var ce utilexec.CodeExitError
		assert.Assert(t, errors.As(err, &ce), "%v", err)
		assert.Check(t, is.Equal(ce.ExitStatus(), 4))
		assert.Check(t, is.Equal(out.String(), "got hello\n"))
	case <-time.After(2 * time.Second):
		t.Fatal("RunInContainer did not return after the command exited; it waits for stdin to close")
	}
}

// podListener listens on the pod's address, handling each connection with serve.
func podListener(t *testing.T, ip string, serve func(net.Conn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	assert.NilError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestPortForwardCopiesBothWays(t *testing.T) {
	t.Parallel()
	h, pod, _ := runningPod(t)
	ip := h.pod(pod).Status.PodIP
	port := podListener(t, ip, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, strings.ToUpper(l)); err != nil {
				return
			}
		}
	})

	client, stream := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.p.PortForward(ctx, pod.Namespace, pod.Name, int32(port), stream) }()

	br := bufio.NewReader(client)
	for _, msg := range []string{"ping\n", "second line\n"} {
		assert.NilError(t, client.SetDeadline(time.Now().Add(2*time.Second)))
		_, err := io.WriteString(client, msg)
		assert.NilError(t, err)
		got, err := br.ReadString('\n')
		assert.NilError(t, err)
		assert.Check(t, is.Equal(got, strings.ToUpper(msg)))
	}

	client.Close() // the client hangs up: the forward ends
	select {
	case err := <-done:
		assert.NilError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("PortForward did not end after the client closed")
	}
}

// halfClosingStream sends a request, then reports EOF (the client is done
// sending) while it still reads the reply, as kubectl port-forward does.
type halfClosingStream struct {
	r      io.Reader
	mu     sync.Mutex
	got    bytes.Buffer
	closed chan struct{}
	once   sync.Once
}

func (s *halfClosingStream) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *halfClosingStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.Write(p)
}
func (s *halfClosingStream) Close() error { s.once.Do(func() { close(s.closed) }); return nil }
func (s *halfClosingStream) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.String()
}

func TestPortForwardDeliversReplyAfterClientHalfClose(t *testing.T) {
	t.Parallel()
	h, pod, _ := runningPod(t)
	ip := h.pod(pod).Status.PodIP
	port := podListener(t, ip, func(c net.Conn) {
		req, err := io.ReadAll(c) // until the client's half-close
		if err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond) // the reply takes a moment
		_, _ = io.WriteString(c, "reply to "+string(req))
	})

	s := &halfClosingStream{r: strings.NewReader("request"), closed: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- h.p.PortForward(context.Background(), pod.Namespace, pod.Name, int32(port), s) }()
	select {
	case err := <-done:
		assert.NilError(t, err)
	case <-time.After(3 * time.Second):
		t.Fatal("PortForward did not end after the pod closed the connection")
	}
	assert.Check(t, is.Equal(s.received(), "reply to request"))
	select {
	case <-s.closed:
	default:
		t.Error("the stream was not closed")
	}
}

// A pod that never answers the client's half-close does not hold the forward
// forever: virtual-kubelet gives PortForward a context that never ends.
func TestPortForwardBoundedAfterClientHalfClose(t *testing.T) {
	t.Parallel()
	h, pod, _ := runningPod(t)
	ip := h.pod(pod).Status.PodIP
	release := make(chan struct{})
	defer close(release)
	port := podListener(t, ip, func(c net.Conn) {
		_, _ = io.ReadAll(c)
		<-release // keeps the connection open, silent
	})
	s := &halfClosingStream{r: strings.NewReader("request"), closed: make(chan struct{})}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- h.p.PortForward(context.Background(), pod.Namespace, pod.Name, int32(port), s) }()
	select {
	case err := <-done:
		assert.NilError(t, err)
		assert.Check(t, time.Since(start) >= portForwardLinger/2, "gave up at once: %s", time.Since(start))
	case <-time.After(portForwardLinger + 2*time.Second):
		t.Fatal("PortForward waits forever for a silent pod")
	}
}

func TestPortForwardErrors(t *testing.T) {
	t.Parallel()
	h, pod, _ := runningPod(t)
	_, stream := net.Pipe()
	err := h.p.PortForward(context.Background(), pod.Namespace, "no-such-pod", 80, stream)
	assert.Check(t, errdefs.IsNotFound(err), "%v", err)

	// Nothing listens on a port of a fresh address of ours.
	ip := h.pod(pod).Status.PodIP
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	assert.NilError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	err = h.p.PortForward(context.Background(), pod.Namespace, pod.Name, int32(port), stream)
	assert.Check(t, is.ErrorContains(err, "port-forward to default/"+pod.Name+" port "+strconv.Itoa(port)))
}
