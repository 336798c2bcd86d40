package localcluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentsandbox/go-sandboxtest/internal/localstate"
)

// A background local cluster, as `sandboxtest-setup local up` runs it: one
// serving process per state directory, found again through files in it
// (named in internal/localstate, which the test library reads too).
const (
	pidFile   = localstate.PidFile
	readyFile = localstate.ReadyFile
	serveLog  = localstate.LogFile
)

// DefaultDir is where `local up` keeps its cluster: $SANDBOXTEST_LOCAL_DIR, else <cache>/local.
func DefaultDir() (string, error) { return localstate.DefaultDir() }

// KubeconfigPath is the kubeconfig a cluster in dir writes.
func KubeconfigPath(dir string) string { return localstate.KubeconfigPath(dir) }

// ServeOptions configure Serve beyond the cluster's Options.
type ServeOptions struct {
	// ExitWithStdin stops the cluster when standard input reaches end of
	// file: the parent that holds its other end closed it or died (a
	// backstop to the parent-death signal, which only Linux has).
	ExitWithStdin bool
	// RemoveDir removes the whole state directory on the way down, log
	// included: it is the temporary directory of a test binary.
	RemoveDir bool
}

// Serve runs the cluster in dir in the foreground until ctx ends,
// SIGINT/SIGTERM arrives or (with ExitWithStdin) stdin closes, then stops
// it and removes dir's state.
func Serve(ctx context.Context, opts Options, so ServeOptions) (err error) {
	// First, so that a parent dying right now still gets a clean stop.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The output may go to a pipe whose reader died with the parent: a
	// write then fails instead of killing this process mid-cleanup.
	signal.Ignore(syscall.SIGPIPE)
	if so.ExitWithStdin {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			fmt.Fprintln(opts.Log, "sandboxtest: standard input closed (the parent is gone or done)")
			cancel()
		}()
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return err
	}
	if pid, ok := servingPid(opts.Dir); ok && pid != os.Getpid() {
		return fmt.Errorf("a local cluster already runs in %s (pid %d); run: sandboxtest-setup local down --dir %s", opts.Dir, pid, opts.Dir)
	}
	if so.RemoveDir {
		defer func() {
			if rerr := os.RemoveAll(opts.Dir); rerr != nil && err == nil {
				err = rerr
			}
		}()
	}
	_ = os.Remove(filepath.Join(opts.Dir, readyFile))
	if err := os.WriteFile(filepath.Join(opts.Dir, pidFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(opts.Dir, pidFile))
	opts.OwnSignals = true
	c, err := Start(ctx, opts, nil)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(opts.Dir, readyFile), []byte(c.Kubeconfig), 0o644); err != nil {
		c.Stop()
		return err
	}
	<-ctx.Done()
	fmt.Fprintln(opts.Log, "sandboxtest: stopping the local cluster")
	err = c.Stop()
	removeState(opts.Dir)
	return err
}

// removeState deletes what a cluster leaves in dir, keeping the serve log for a post-mortem.
func removeState(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != serveLog {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// UpOptions configure Up.
type UpOptions struct {
	Dir string
	// Command starts Serve for Dir in a new process (for the CLI: its own
	// executable with `local serve --dir Dir`).
	Command []string
	// Timeout bounds the whole start, first build included. Default 30 minutes.
	Timeout time.Duration
	Log     io.Writer
}

// Up starts a background cluster in dir, or finds the one already there,
// and returns its kubeconfig path once it is ready.
func Up(ctx context.Context, o UpOptions) (string, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Minute
	}
	if st := GetStatus(ctx, o.Dir); st.Ready {
		fmt.Fprintf(o.Log, "sandboxtest: a local cluster already runs in %s (pid %d)\n", o.Dir, st.Pid)
		return st.Kubeconfig, nil
	} else if st.Pid != 0 {
		return "", fmt.Errorf("a local cluster process (pid %d) in %s is not ready: %s; run: sandboxtest-setup local down --dir %s", st.Pid, o.Dir, st.Problem, o.Dir)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return "", err
	}
	logPath := filepath.Join(o.Dir, serveLog)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	cmd := exec.Command(o.Command[0], o.Command[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: it outlives this command and the terminal's ^C.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting the local cluster process: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.After(o.Timeout)
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	var shown int64
	for {
		shown = copyNew(logPath, shown, o.Log) // progress, first build included
		if data, err := os.ReadFile(filepath.Join(o.Dir, readyFile)); err == nil {
			copyNew(logPath, shown, o.Log)
			return strings.TrimSpace(string(data)), nil
		}
		select {
		case err := <-exited:
			copyNew(logPath, shown, o.Log)
			return "", fmt.Errorf("the local cluster process exited (%v) before it was ready; its log: %s", err, logPath)
		case <-deadline:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return "", fmt.Errorf("the local cluster was not ready after %s; its log: %s", o.Timeout, logPath)
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return "", ctx.Err()
		case <-ticker.C:
		}
	}
}

// copyNew copies what path gained since offset to w.
func copyNew(path string, offset int64, w io.Writer) int64 {
	f, err := os.Open(path)
	if err != nil {
		return offset
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return offset
	}
	n, _ := io.Copy(w, f)
	return offset + n
}

// Down stops the background cluster in dir and waits until its processes are gone.
func Down(o UpOptions) error {
	if o.Log == nil {
		o.Log = io.Discard
	}
	pid, ok := servingPid(o.Dir)
	if !ok {
		removeState(o.Dir)
		fmt.Fprintf(o.Log, "sandboxtest: no local cluster runs in %s\n", o.Dir)
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			// Its children die with it (Pdeathsig).
			_ = syscall.Kill(pid, syscall.SIGKILL)
			fmt.Fprintf(o.Log, "sandboxtest: local cluster (pid %d) did not stop within 30s; killed it\n", pid)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for processAlive(pid) {
		time.Sleep(50 * time.Millisecond)
	}
	removeState(o.Dir)
	fmt.Fprintf(o.Log, "sandboxtest: local cluster in %s stopped\n", o.Dir)
	return nil
}

// Status describes the background cluster in a directory.
type Status struct {
	Dir        string
	Pid        int // 0 when no process runs
	Ready      bool
	Kubeconfig string
	Server     string
	Nodes      int
	Pods       int
	Problem    string // why it is not ready, when it is not
}

// GetStatus inspects dir: the serving process and, through the kubeconfig, the API.
func GetStatus(ctx context.Context, dir string) Status {
	st := Status{Dir: dir}
	pid, ok := servingPid(dir)
	if !ok {
		st.Problem = "no local cluster process"
		return st
	}
	st.Pid = pid
	data, err := os.ReadFile(filepath.Join(dir, readyFile))
	if err != nil {
		st.Problem = "starting (no ready marker yet)"
		return st
	}
	st.Kubeconfig = strings.TrimSpace(string(data))
	cfg, err := clientcmd.BuildConfigFromFlags("", st.Kubeconfig)
	if err != nil {
		st.Problem = err.Error()
		return st
	}
	st.Server = cfg.Host
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		st.Problem = err.Error()
		return st
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		st.Problem = "API not reachable: " + err.Error()
		return st
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		st.Problem = "API not reachable: " + err.Error()
		return st
	}
	st.Nodes, st.Pods, st.Ready = len(nodes.Items), len(pods.Items), true
	return st
}

func servingPid(dir string) (int, bool) { return localstate.ServingPid(dir) }

func processAlive(pid int) bool { return localstate.ProcessAlive(pid) }
