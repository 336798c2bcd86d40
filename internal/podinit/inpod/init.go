package inpod

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// defaultPath is the PATH of a command whose environment names none, as in
// the images the host stands in for.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// containerCaps bound what a process started in an isolated pod can hold:
// a container runtime's default set. Root in the pod keeps these over the
// pod's own namespaces; the mount-changing CAP_SYS_ADMIN is not among them.
var containerCaps = []int{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID, unix.CAP_KILL,
	unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE, unix.CAP_NET_RAW,
	unix.CAP_SYS_CHROOT, unix.CAP_MKNOD, unix.CAP_AUDIT_WRITE, unix.CAP_SETFCAP,
}

// initState is the running init.
type initState struct {
	cfg  Config
	c    *Conn
	self *os.File // this binary, opened before the host's tree went away

	mu    sync.Mutex  // held across fork+register and across reaping, so no exit is missed
	procs map[int]int // pid -> request id
	ids   map[int]int // request id -> pid
	warm  *warmProc   // the Prep.Warm process, until an exec takes it over
	view  string      // the root whose pod-independent view prepare built, if any

	jobs chan job
}

type job struct {
	m     Message
	stdio []*os.File
	extra *os.File       // fd 3 of the process, for a warm one
	done  chan<- started // when set, gets the result instead of the node
}

type started struct {
	pid int
	err error
}

func runInit() error {
	syscall.CloseOnExec(3) // the control socket stays with the init
	c := NewConn(os.NewFile(3, "node"))
	// Signals from inside the pod must not end PID 1 by Go's default
	// handling; catching them (instead of ignoring) lets children start
	// with the default dispositions.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE)
	go func() {
		for range sigs {
		}
	}()
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)

	st := &initState{c: c, procs: map[int]int{}, ids: map[int]int{}, jobs: make(chan job)}
	m, tasks, err := c.Recv()
	if err != nil {
		return fmt.Errorf("reading the prep: %w", err)
	}
	if m.Op != OpPrepare || m.Prep == nil {
		CloseAll(tasks)
		return fmt.Errorf("expected the prep, got %q", m.Op)
	}
	st.cfg.Prep = *m.Prep
	go st.reaper(chld)
	if err := st.answer(st.prepare(m.ViewRoot, tasks)); err != nil {
		return err
	}
	// A spare init waits here until the node has a pod for it.
	m, _, err = c.Recv()
	if err != nil {
		return fmt.Errorf("reading the config: %w", err)
	}
	if m.Op != OpConfig || m.Config == nil {
		return fmt.Errorf("expected the config, got %q", m.Op)
	}
	prep := st.cfg.Prep
	st.cfg = *m.Config
	st.cfg.Prep = prep // what this init was prepared for is what it is
	if err := st.answer(st.setup()); err != nil {
		return err
	}
	for {
		m, files, err := c.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				st.killAll() // the node is gone; in a PID namespace this exit ends everything anyway
				return nil
			}
			return err
		}
		switch m.Op {
		case OpExec:
			st.jobs <- job{m: m, stdio: files}
		case OpSignal:
			CloseAll(files)
			st.mu.Lock()
			pid, ok := st.ids[m.ID]
			st.mu.Unlock()
			if ok {
				_ = unix.Kill(-pid, unix.Signal(m.Signal))
			}
		default:
			CloseAll(files)
		}
	}
}

// answer tells the node that a step went well, or why not.
func (st *initState) answer(err error) error {
	if err != nil {
		_ = st.c.Send(Message{Op: OpError, Error: err.Error()})
		return err
	}
	return st.c.Send(Message{Op: OpReady})
}

// prepare does what does not depend on the pod: limits, the spawner
// thread (in the cgroups whose tasks files came with the prep), the warm
// process and, on viewRoot when set, the view's pod-independent part.
func (st *initState) prepare(viewRoot string, tasks []*os.File) error {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	st.self = self
	unix.Umask(0o022)
	if st.cfg.PidsLimit > 0 {
		lim := &unix.Rlimit{Cur: uint64(st.cfg.PidsLimit), Max: uint64(st.cfg.PidsLimit)}
		if err := unix.Setrlimit(unix.RLIMIT_NPROC, lim); err != nil {
			return fmt.Errorf("setting RLIMIT_NPROC: %w", err)
		}
	}
	if !st.cfg.Isolated {
		// Orphans come back here to be reaped, as they would to PID 1.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return err
		}
	}
	ready := make(chan error, 1)
	go st.spawner(tasks, ready)
	if err := <-ready; err != nil {
		return err
	}
	if st.cfg.Warm != "" {
		if err := st.startWarm(); err != nil {
			return err
		}
	}
	if viewRoot != "" && st.cfg.Isolated {
		if err := prepareView(viewRoot); err != nil {
			return err
		}
		st.view = viewRoot
	}
	return nil
}

// setup builds the pod's filesystem view. A warm process already running
// moves into it with the init: pivot_root changes the root and working
// directory of every process of the mount namespace that had the old ones.
func (st *initState) setup() error {
	if !st.cfg.Isolated {
		return nil
	}
	var err error
	if st.view != "" {
		err = finishView(&st.cfg, st.view) // on the root prepared ahead, not Config.Root
	} else {
		err = buildView(&st.cfg, st.cfg.Root)
	}
	if err != nil {
		return err
	}
	// Nothing in the pod may read this process's memory or files.
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}

// spawner starts every process of the pod from one OS thread whose
// capabilities are cut down to a container's: capabilities are per thread,
// and a child inherits the forking thread's. It first moves itself alone
// into the pod's cgroups (a "0" written to each tasks file moves the
// writing thread), so every process of the pod starts in them.
func (st *initState) spawner(tasks []*os.File, ready chan<- error) {
	runtime.LockOSThread() // never unlocked: the thread's credentials are changed for good
	err := joinCgroups(tasks)
	CloseAll(tasks)
	if err != nil {
		ready <- err
		return
	}
	if st.cfg.Isolated {
		if err := dropCaps(); err != nil {
			ready <- fmt.Errorf("limiting capabilities: %w", err)
			return
		}
	}
	ready <- nil
	for j := range st.jobs {
		var err error
		pid := st.takeWarm(j)
		if pid == 0 {
			pid, err = st.start(j)
		}
		CloseAll(j.stdio)
		if j.done != nil {
			j.done <- started{pid, err}
			continue
		}
		if err != nil {
			_ = st.c.Send(Message{Op: OpError, ID: j.m.ID, Error: err.Error()})
			continue
		}
		_ = st.c.Send(Message{Op: OpStarted, ID: j.m.ID, Pid: pid})
	}
}

// joinCgroups moves the calling thread alone into the cgroup of each v1
// tasks file.
func joinCgroups(tasks []*os.File) error {
	for _, f := range tasks {
		if _, err := unix.Write(int(f.Fd()), []byte("0")); err != nil {
			return fmt.Errorf("joining the pod's cgroup (%s): %w", f.Name(), err)
		}
	}
	return nil
}

func (st *initState) start(j job) (int, error) {
	m := j.m
	if len(j.stdio) != 3 {
		return 0, fmt.Errorf("exec %q: got %d stdio descriptors, want 3", m.Argv[0], len(j.stdio))
	}
	path := m.Argv[0]
	if m.Self {
		path = fmt.Sprintf("/proc/self/fd/%d", st.self.Fd())
	} else {
		var err error
		if path, err = lookPath(m.Argv[0], m.Env); err != nil {
			return 0, err
		}
	}
	dir := m.Dir
	if dir == "" {
		dir = "/"
	}
	sys := &syscall.SysProcAttr{Setsid: true}
	if !st.cfg.Isolated {
		sys.Pdeathsig = syscall.SIGKILL // this thread lives as long as the init
	}
	files := []uintptr{j.stdio[0].Fd(), j.stdio[1].Fd(), j.stdio[2].Fd()}
	if j.extra != nil {
		files = append(files, j.extra.Fd())
	}
	attr := &syscall.ProcAttr{Dir: dir, Env: m.Env, Files: files, Sys: sys}
	st.mu.Lock()
	defer st.mu.Unlock()
	pid, err := syscall.ForkExec(path, m.Argv, attr)
	if err != nil {
		return 0, fmt.Errorf("exec %q in %s: %w", m.Argv[0], dir, err)
	}
	if j.done == nil { // a warm process is registered when an exec takes it over
		st.procs[pid] = m.ID
		st.ids[m.ID] = pid
	}
	return pid, nil
}

// reaper collects every child that exits, the node's processes and
// orphans alike, and reports the node's.
func (st *initState) reaper(chld <-chan os.Signal) {
	for range chld {
		st.mu.Lock()
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			id, ok := st.procs[pid]
			if !ok {
				continue
			}
			delete(st.procs, pid)
			delete(st.ids, id)
			code := ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
			_ = st.c.Send(Message{Op: OpExited, ID: id, Code: code})
		}
		st.mu.Unlock()
	}
}

// killAll ends the process groups the init started (for the not isolated
// case, where no PID namespace does it).
func (st *initState) killAll() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for pid := range st.procs {
		_ = unix.Kill(-pid, unix.SIGKILL)
	}
}

// dropCaps limits the calling thread's children to containerCaps: the
// bounding set loses the rest, and nothing is passed on as ambient or
// inheritable.
func dropCaps() error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	keep := map[int]bool{}
	for _, c := range containerCaps {
		keep[c] = true
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if keep[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("dropping capability %d: %w", c, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	return unix.Capset(&hdr, &data[0])
}

// lookPath finds name in the PATH of env (defaultPath if none), as execvp would.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	search := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			search = v
		}
	}
	if search == "" {
		return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
	}
	for _, d := range strings.Split(search, ":") {
		if d == "" {
			d = "."
		}
		p := path.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}
