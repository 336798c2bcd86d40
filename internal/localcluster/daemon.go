package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"

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
	tuneServingProcess()
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
	if err := claimDir(opts.Dir); err != nil {
		return err
	}
	// The lock for the whole life of this process: liveness is the lock.
	// A few tries, as a status check holds it for an instant.
	lock := localstate.NewLock(opts.Dir)
	lctx, lcancel := context.WithTimeout(ctx, 3*time.Second)
	locked, lerr := lock.TryLockContext(lctx, 50*time.Millisecond)
	lcancel()
	if !locked {
		if lerr != nil && ctx.Err() == nil && !errors.Is(lerr, context.DeadlineExceeded) {
			return fmt.Errorf("sandboxtest: locking %s: %w", lock.Path(), lerr)
		}
		pid, _ := servingPid(opts.Dir)
		return fmt.Errorf("sandboxtest: a local cluster already runs in %s (pid %d); run: sandboxtest-setup local down --dir %s", opts.Dir, pid, opts.Dir)
	}
	defer lock.Unlock() // last: after the cluster stopped and its state went
	if so.RemoveDir {
		defer func() {
			if rerr := os.RemoveAll(opts.Dir); rerr != nil && err == nil {
				err = rerr
			}
		}()
	}
	// A dead predecessor's marker and pid must not speak for this process.
	_ = os.Remove(filepath.Join(opts.Dir, readyFile))
	if err := writeFileAtomic(filepath.Join(opts.Dir, pidFile), []byte(strconv.Itoa(os.Getpid()))); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(opts.Dir, pidFile))
	opts.OwnSignals = true
	c, err := Start(ctx, opts, nil)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(opts.Dir, readyFile), []byte(c.Kubeconfig)); err != nil {
		c.Stop()
		return err
	}
	<-ctx.Done()
	fmt.Fprintln(opts.Log, "sandboxtest: stopping the local cluster")
	err = c.Stop()
	removeState(opts.Dir)
	return err
}

// writeFileAtomic writes path (0600) so that a reader sees all of it or nothing.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// removeState deletes what a cluster created in dir (localstate.Owned) and
// nothing else, and only in a directory marked as a cluster's.
func removeState(dir string) {
	if !localstate.IsClusterDir(dir) {
		return
	}
	for _, name := range localstate.Owned {
		_ = os.RemoveAll(filepath.Join(dir, name))
	}
}

// claimDir marks dir as a cluster's: a new or empty directory, one already
// marked, or one holding only what a cluster writes (an older version's).
// Anything else is refused, so that no one's files are ever taken for state.
func claimDir(dir string) error {
	if !localstate.IsClusterDir(dir) {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, e := range entries {
			if !slices.Contains(localstate.Owned, e.Name()) && e.Name() != serveLog && e.Name() != localstate.LockFile {
				return fmt.Errorf("sandboxtest: %s holds files (%s...) and is not a local cluster's state directory; nothing was touched; choose a new or empty --dir", dir, e.Name())
			}
		}
	}
	return localstate.Mark(dir)
}

// notClusterDir is the error for a directory that holds files but no marker.
func notClusterDir(dir string) error {
	return fmt.Errorf("sandboxtest: %s is not a local cluster's state directory (no %s in it); nothing was touched; pass the --dir that `sandboxtest-setup local up` used", dir, localstate.MarkerFile)
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
	if err := claimDir(o.Dir); err != nil {
		return "", err
	}
	// One `up` at a time per directory: a second one waits here, then finds
	// the first one's cluster.
	upLock := flock.New(filepath.Join(o.Dir, localstate.UpLockFile), flock.SetPermissions(0o600))
	lctx, lcancel := context.WithTimeout(ctx, o.Timeout)
	locked, err := upLock.TryLockContext(lctx, 100*time.Millisecond)
	lcancel()
	if !locked {
		return "", fmt.Errorf("sandboxtest: waiting for another `sandboxtest-setup local up` on %s: %v", o.Dir, err)
	}
	defer upLock.Unlock()
	if st := GetStatus(ctx, o.Dir); st.Ready {
		fmt.Fprintf(o.Log, "sandboxtest: a local cluster already runs in %s (pid %d)\n", o.Dir, st.Pid)
		return st.Kubeconfig, nil
	} else if st.Pid != 0 {
		return "", fmt.Errorf("sandboxtest: a local cluster process (pid %d) in %s is not ready: %s; run: sandboxtest-setup local down --dir %s", st.Pid, o.Dir, st.Problem, o.Dir)
	}
	// The lock is free: whatever a killed predecessor left is stale.
	removeState(o.Dir)
	logPath := filepath.Join(o.Dir, serveLog)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	_ = logf.Chmod(0o600) // a log from before this version may be 0644
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
		if kc, ok := localstate.ReadyKubeconfig(o.Dir); ok && localstate.Held(o.Dir) {
			copyNew(logPath, shown, o.Log)
			return kc, nil
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
	entries, err := os.ReadDir(o.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sandboxtest: reading %s: %w", o.Dir, err)
	}
	if len(entries) == 0 {
		fmt.Fprintf(o.Log, "sandboxtest: no local cluster runs in %s\n", o.Dir)
		return nil
	}
	if !localstate.IsClusterDir(o.Dir) {
		return notClusterDir(o.Dir)
	}
	if !localstate.Held(o.Dir) {
		removeState(o.Dir) // a killed cluster's leftovers
		fmt.Fprintf(o.Log, "sandboxtest: no local cluster runs in %s\n", o.Dir)
		return nil
	}
	// The holder writes its pid right after taking the lock.
	pid, ok := servingPid(o.Dir)
	for wait := time.Now().Add(5 * time.Second); !ok && localstate.Held(o.Dir) && time.Now().Before(wait); {
		time.Sleep(50 * time.Millisecond)
		pid, ok = servingPid(o.Dir)
	}
	if !ok {
		if !localstate.Held(o.Dir) {
			removeState(o.Dir)
			fmt.Fprintf(o.Log, "sandboxtest: no local cluster runs in %s\n", o.Dir)
			return nil
		}
		return fmt.Errorf("sandboxtest: a process holds the lock %s but wrote no live pid in %s; nothing was touched; stop it (fuser %s) and run down again", filepath.Join(o.Dir, localstate.LockFile), filepath.Join(o.Dir, pidFile), filepath.Join(o.Dir, localstate.LockFile))
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	// The lock goes with the serving process, after it stopped the cluster.
	for localstate.Held(o.Dir) {
		if time.Now().After(deadline) {
			// Only the process that still holds the lock and wrote this pid
			// under it. Its children die with it (Pdeathsig).
			if p, ok := servingPid(o.Dir); ok && p == pid {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				fmt.Fprintf(o.Log, "sandboxtest: local cluster (pid %d) did not stop within 30s; killed it\n", pid)
			}
			for localstate.Held(o.Dir) {
				time.Sleep(50 * time.Millisecond)
			}
			break
		}
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
