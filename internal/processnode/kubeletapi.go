package processnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	utilexec "k8s.io/utils/exec"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// The kubelet API half of the provider: what `kubectl logs`, `exec` and
// `port-forward` reach through kube-apiserver.

func (p *Provider) container(ns, pod, name string) (*podRun, *containerRun, error) {
	r := p.get(ns, pod)
	if r == nil {
		return nil, nil, errdefs.NotFoundf("pod %s/%s is not on node %s", ns, pod, p.cfg.Name)
	}
	for _, c := range r.containers {
		if c.spec.Name == name || name == "" {
			return r, c, nil
		}
	}
	return nil, nil, errdefs.NotFoundf("container %s is not in pod %s/%s", name, ns, pod)
}

// GetContainerLogs serves the container's log file: tail, limit and follow.
func (p *Provider) GetContainerLogs(ctx context.Context, ns, pod, container string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	_, c, err := p.container(ns, pod, container)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(c.logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	offset := int64(len(data))
	if opts.Tail > 0 {
		data = lastLines(data, opts.Tail)
	}
	if opts.LimitBytes > 0 && len(data) > opts.LimitBytes {
		data = data[:opts.LimitBytes]
	}
	if !opts.Follow {
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	pr, pw := io.Pipe()
	go func() {
		if _, err := pw.Write(data); err != nil {
			return
		}
		pw.CloseWithError(followFile(ctx, c.logPath, offset, pw))
	}()
	return pr, nil
}

// followFile copies what is appended to path from offset until ctx ends.
func followFile(ctx context.Context, path string, offset int64, w io.Writer) error {
	for {
		f, err := os.Open(path)
		if err == nil {
			if _, err = f.Seek(offset, io.SeekStart); err == nil {
				var n int64
				n, err = io.Copy(w, f)
				offset += n
			}
			f.Close()
			if err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func lastLines(data []byte, n int) []byte {
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if data[i] == '\n' {
			n--
			if n == 0 {
				return data[i+1:]
			}
		}
	}
	return data
}

// RunInContainer runs cmd in the container's pod, working directory and
// environment. A non-zero exit reaches kubectl as the command's exit code.
func (p *Provider) RunInContainer(ctx context.Context, ns, pod, container string, cmd []string, attach api.AttachIO) error {
	r, c, err := p.container(ns, pod, container)
	if err != nil {
		return err
	}
	if len(cmd) == 0 {
		return errdefs.InvalidInput("no command given")
	}
	stderr := attach.Stderr()
	if stderr == nil && attach.TTY() {
		stderr = attach.Stdout()
	}
	code, err := r.runIn(ctx, c, cmd, attach.Stdin(), attach.Stdout(), stderr)
	if err != nil {
		return fmt.Errorf("exec in %s/%s: %w", pod, c.spec.Name, err)
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// runIn runs argv in the container's pod with the given streams (nil: none)
// and returns its exit code. The process is killed when ctx ends.
func (r *podRun) runIn(ctx context.Context, c *containerRun, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	select {
	case <-r.sandboxed:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	r.mu.Lock()
	sb := r.sb
	r.mu.Unlock()
	if sb == nil {
		return 0, errors.New("the pod has no running sandbox")
	}
	proc := podinit.Process{Argv: argv, Env: c.env, Dir: c.workDir}
	var copies sync.WaitGroup
	var theirs, ours []*os.File
	defer func() {
		closeFiles(theirs)
		closeFiles(ours)
	}()
	if stdin != nil {
		// Through a pipe of our own: the client's stdin may stay open after the
		// command has exited (an interactive `kubectl exec -i`).
		pr, pw, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		theirs, ours = append(theirs, pr), append(ours, pw)
		proc.Stdin = pr
		go func() {
			_, _ = io.Copy(pw, stdin)
			pw.Close() // EOF for the command
		}()
	}
	for _, s := range []struct {
		w   io.Writer
		dst **os.File
	}{{stdout, &proc.Stdout}, {stderr, &proc.Stderr}} {
		if s.w == nil {
			continue
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		theirs, ours = append(theirs, pw), append(ours, pr)
		*s.dst = pw
		copies.Add(1)
		go func() {
			defer copies.Done()
			_, _ = io.Copy(s.w, pr)
		}()
	}
	p, err := sb.Exec(proc)
	closeFiles(theirs) // the pod's process holds its own copies now
	theirs = nil
	if err != nil {
		return 0, err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Stop(0)
	}
	// Output still in the pipes is delivered; a background child that keeps
	// them open does not hold the exec open for long.
	copied := make(chan struct{})
	go func() { copies.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(execOutputLinger):
	}
	return p.ExitCode(), nil
}

// execOutputLinger is how long an exec waits for its output once the
// command has exited.
const execOutputLinger = time.Second

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// AttachToContainer is not offered: containers here have no attached terminal.
func (p *Provider) AttachToContainer(context.Context, string, string, string, api.AttachIO) error {
	return errdefs.InvalidInput("attach is not supported on the local process node; use exec")
}

// PortForward connects the stream to <podIP>:port.
func (p *Provider) PortForward(ctx context.Context, ns, pod string, port int32, stream io.ReadWriteCloser) error {
	r := p.get(ns, pod)
	if r == nil {
		return errdefs.NotFoundf("pod %s/%s is not on node %s", ns, pod, p.cfg.Name)
	}
	defer stream.Close()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := p.dial(dctx, "tcp", net.JoinHostPort(r.ip, strconv.Itoa(int(port))))
	cancel()
	if err != nil {
		return fmt.Errorf("port-forward to %s/%s port %d: %w", ns, pod, port, err)
	}
	defer conn.Close()
	toPod, fromPod := make(chan struct{}), make(chan struct{})
	go func() { _, _ = io.Copy(conn, stream); closeWrite(conn); close(toPod) }()
	go func() { _, _ = io.Copy(stream, conn); close(fromPod) }()
	select {
	case <-fromPod: // the pod closed the connection: nothing more to deliver
	case <-ctx.Done():
	case <-toPod:
		// The client is done sending (kubectl half-closes the stream and waits
		// for the reply). Let the pod's answer through, for a while, as
		// containerd does: virtual-kubelet's ctx never ends on its own.
		select {
		case <-fromPod:
		case <-ctx.Done():
		case <-time.After(portForwardLinger):
		}
	}
	return nil
}

// portForwardLinger is how long a forward waits for the pod's side to finish
// once the client's side has.
const portForwardLinger = time.Second

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// GetStatsSummary reports the node and its pods without usage figures.
func (p *Provider) GetStatsSummary(context.Context) (*statsv1alpha1.Summary, error) {
	s := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: p.cfg.Name, StartTime: metav1.NewTime(p.started)}}
	pods, _ := p.GetPods(context.Background())
	for _, pod := range pods {
		s.Pods = append(s.Pods, statsv1alpha1.PodStats{
			PodRef:    statsv1alpha1.PodReference{Name: pod.Name, Namespace: pod.Namespace, UID: string(pod.UID)},
			StartTime: pod.CreationTimestamp,
		})
	}
	return s, nil
}

// GetMetricsResource offers no resource metrics.
func (p *Provider) GetMetricsResource(context.Context) ([]*dto.MetricFamily, error) {
	return nil, nil
}
