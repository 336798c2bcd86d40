package podinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit/inpod"
	"github.com/agentsandbox/go-sandboxtest/internal/proc"
)

// Sandbox is the node's handle on a running pod init.
type Sandbox struct {
	prep   Prep
	pid    int
	kill   func()              // by whoever started the init, which knows whether it still runs
	attach func(*PodNet) error // on a cluster network: gives the pod its address
	net    *PodNet             // the address given ahead (Attach), if any
	c      *inpod.Conn
	done   chan struct{} // closed when the init has exited (and with it every process of the pod)

	mu      sync.Mutex
	nextID  int
	procs   map[int]*Proc
	waiting map[int]chan inpod.Message // exec requests awaiting started/error
	err     error                      // why the init ended, once done
}

// Proc is a process the init started in the pod.
type Proc struct {
	sb   *Sandbox
	id   int
	pid  int // in the pod's PID namespace
	done chan struct{}
	code int
}

// Process describes a process to start in the pod.
type Process struct {
	Argv []string
	Env  []string // the whole environment; nothing is inherited
	Dir  string   // working directory inside the pod
	// Self runs the node's own binary in the role named by Argv[0] (the
	// runtime server), which is not visible inside the pod.
	Self bool
	// Stdin, Stdout and Stderr are passed to the process as they are; nil
	// means /dev/null.
	Stdin, Stdout, Stderr *os.File
}

// Namespaces are the ones every isolated pod gets; a pod on a cluster
// network (Network.Start) gets a network namespace too.
const Namespaces = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS

// setgroupsAllowed reports whether this process's user namespace lets a
// child's gid map allow setgroups (false once an unprivileged creator denied it).
func setgroupsAllowed() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err != nil || strings.TrimSpace(string(b)) == "allow"
}

// initCaps are the capabilities an init running as a non-root container
// user keeps across its exec (ambient): enough to build the view and to
// limit what its children get.
var initCaps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_SETPCAP, unix.CAP_DAC_OVERRIDE, unix.CAP_SYS_CHROOT}

// sysProcAttr is how an init is cloned: in new namespaces with the node's
// user mapped to the container's, or (not isolated) as a plain child.
func sysProcAttr(isolated bool, uid, gid int, extraFlags uintptr) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setsid: true}
	if !isolated {
		return attr
	}
	attr.Cloneflags = Namespaces | extraFlags
	attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: os.Getuid(), Size: 1}}
	attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: os.Getgid(), Size: 1}}
	// Root may drop its supplementary groups; anyone else must deny setgroups
	// before writing a gid map, and keeps them. Inside an unprivileged
	// user namespace (the cluster network's), setgroups stays denied.
	root := os.Getuid() == 0 && setgroupsAllowed()
	attr.GidMappingsEnableSetgroups = root
	attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: !root}
	if uid != 0 {
		attr.AmbientCaps = initCaps
	}
	return attr
}

// Start starts a pod init with cfg, as a child of this process (without a
// network namespace of its own: see Network.Start for that), and returns
// once its view is built: Launch, then Configure.
func Start(cfg Config, join *Join, stderr io.Writer) (*Sandbox, error) {
	sb, err := Launch(cfg.Prep, "", join, stderr)
	if err != nil {
		return nil, err
	}
	if err := sb.Configure(cfg); err != nil {
		return nil, err
	}
	return sb, nil
}

// Launch starts a pod init in its namespaces and has it do what needs no
// pod (Prep), so that a pod's start can skip that part: a node keeps such
// an init as a spare and hands it a pod with Configure. join, when set,
// puts the pod's processes into cgroups. stderr receives the init's own
// complaints. The init ends with this process (Pdeathsig) or with Kill.
// viewRoot, when set, is an empty host directory on which the init builds
// the part of its pod's view that no pod decides (the root tmpfs, system
// directories, /dev, /proc) at once; Configure then finishes the view
// there, not on Config.Root. Once Configure has returned, the directory
// may be removed.
func Launch(prep Prep, viewRoot string, join *Join, stderr io.Writer) (*Sandbox, error) {
	return launchInit(prep, viewRoot, join, func(conn *os.File, ended func(error)) (launched, error) {
		cmd := &exec.Cmd{
			Path:        "/proc/self/exe",
			Args:        []string{inpod.RoleInit},
			Env:         []string{},
			ExtraFiles:  []*os.File{conn}, // fd 3
			Stderr:      stderr,
			SysProcAttr: sysProcAttr(prep.Isolated, prep.UID, prep.GID, 0),
		}
		// Pdeathsig takes the init down with this process.
		if err := proc.StartLocked(cmd, ended); err != nil {
			return launched{}, err
		}
		pid := cmd.Process.Pid
		return launched{pid: pid, kill: func() { _ = cmd.Process.Kill() }}, nil
	})
}

// launched is a started init: its host pid, how to kill it, and (on a
// cluster network) how to give its pod an address.
type launched struct {
	pid    int
	kill   func()
	attach func(*PodNet) error
}

// launcher starts an init with conn as its fd 3; ended is called once with
// the init's exit.
type launcher func(conn *os.File, ended func(error)) (launched, error)

// Join puts a pod's processes into cgroups: the init's whole process
// (Place), or only the init's thread that starts every process of the pod
// (Tasks), whose children then start in the groups. On cgroup v1 a
// process moved by another (cgroup.procs) waits for an RCU grace period,
// 5 to 16 ms here, while a thread that moves itself alone (writing "0" to
// a group's tasks file) takes 0.1 ms (BENCHMARKS.md). The init's own
// threads then stay in the node's groups: its memory (about 1 MB) is not
// the pod's.
type Join struct {
	// Place, when set, runs with the init's host pid before the init does
	// anything.
	Place func(pid int) error
	// Tasks are cgroup v1 tasks files open for writing; they are opened by
	// the node, whose credentials the kernel checks, and Launch closes them.
	Tasks []*os.File
}

// Close closes Tasks (Launch does, once it has sent them to the init).
func (j *Join) Close() {
	if j != nil {
		inpod.CloseAll(j.Tasks)
	}
}

func launchInit(prep Prep, viewRoot string, join *Join, launch launcher) (*Sandbox, error) {
	defer join.Close() // the init has its own copies once the prep is sent
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("podinit: socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "pod-init"), os.NewFile(uintptr(pair[1]), "pod-init")
	defer theirs.Close()
	sb := &Sandbox{prep: prep, c: inpod.NewConn(ours), done: make(chan struct{}), procs: map[int]*Proc{}, waiting: map[int]chan inpod.Message{}}
	l, err := launch(theirs, sb.ended)
	if err != nil {
		ours.Close()
		return nil, fmt.Errorf("podinit: starting the pod init: %w", err)
	}
	theirs.Close() // only the init holds it now: its exit closes the socket
	sb.pid, sb.kill, sb.attach = l.pid, l.kill, l.attach
	var tasks []*os.File
	if join != nil {
		if join.Place != nil {
			if err := join.Place(sb.pid); err != nil {
				return nil, sb.fail(err)
			}
		}
		tasks = join.Tasks
	}
	if err := sb.c.Send(inpod.Message{Op: inpod.OpPrepare, Prep: &prep, ViewRoot: viewRoot}, tasks...); err != nil {
		return nil, sb.fail(fmt.Errorf("podinit: sending the prep: %w", err))
	}
	if err := sb.awaitReady("preparing the pod init"); err != nil {
		return nil, sb.fail(err)
	}
	return sb, nil
}

// Attach gives a launched init's pod its address on the cluster network
// ahead of Configure, so that a node keeping the init as a spare has that
// done too; Configure with the same address then skips it (with another,
// it readdresses the pod). On error the init is killed.
func (s *Sandbox) Attach(pn PodNet) error {
	if s.attach == nil {
		return s.fail(errors.New("podinit: the pod init is not on a cluster network"))
	}
	if err := s.attach(&pn); err != nil {
		return s.fail(fmt.Errorf("podinit: giving the pod its address: %w", err))
	}
	s.net = &pn
	return nil
}

// Configure has a launched init build cfg's pod (cfg.Prep must be the one
// it was launched with), and returns once the view is built. On error the
// init is killed.
func (s *Sandbox) Configure(cfg Config) error {
	if cfg.Prep != s.prep {
		return s.fail(fmt.Errorf("podinit: the pod init was prepared for %+v, not %+v", s.prep, cfg.Prep))
	}
	// The address (from the cluster network's helper) and the view (from
	// the init) are independent: both are asked for at once.
	attached := make(chan error, 1)
	switch {
	case s.attach == nil:
		attached <- nil
	case cfg.Net == nil:
		return s.fail(errors.New("podinit: a pod on the cluster network needs its address (Config.Net)"))
	case s.net != nil && *s.net == *cfg.Net:
		attached <- nil // given ahead
	default:
		go func() { attached <- s.attach(cfg.Net) }()
	}
	err := s.c.Send(inpod.Message{Op: inpod.OpConfig, Config: &cfg})
	if err != nil {
		err = fmt.Errorf("podinit: sending the config: %w", err)
	} else {
		err = s.awaitReady("building the pod")
	}
	if aerr := <-attached; aerr != nil && err == nil {
		err = fmt.Errorf("podinit: giving the pod its address: %w", aerr)
	}
	if err != nil {
		return s.fail(err)
	}
	go s.readLoop()
	return nil
}

// awaitReady reads the init's answer to a step.
func (s *Sandbox) awaitReady(step string) error {
	m, _, err := s.c.Recv()
	switch {
	case err != nil:
		<-s.done
		return fmt.Errorf("podinit: the pod init ended before it was ready (%v)", s.err)
	case m.Op == inpod.OpError:
		return fmt.Errorf("podinit: %s: %s", step, m.Error)
	case m.Op != inpod.OpReady:
		return fmt.Errorf("podinit: unexpected %q from the pod init", m.Op)
	}
	return nil
}

// fail kills an init that did not get to run its pod, and returns err.
func (s *Sandbox) fail(err error) error {
	s.Kill()
	s.c.Close()
	return err
}

// Pid is the init's process id on the host.
func (s *Sandbox) Pid() int { return s.pid }

// Done is closed when the init, and every process of the pod, has ended.
func (s *Sandbox) Done() <-chan struct{} { return s.done }

// Kill ends the init, which ends every process in the pod's PID namespace,
// and waits for it. Idempotent.
func (s *Sandbox) Kill() {
	s.kill()
	<-s.done
}

func (s *Sandbox) ended(err error) {
	s.mu.Lock()
	s.err = err
	procs := s.procs
	s.procs = map[int]*Proc{}
	for id, ch := range s.waiting {
		ch <- inpod.Message{Op: inpod.OpError, Error: fmt.Sprintf("the pod init ended (%v)", err)}
		delete(s.waiting, id)
	}
	s.mu.Unlock()
	for _, p := range procs {
		p.code = 128 + int(syscall.SIGKILL)
		close(p.done)
	}
	close(s.done)
}

// readLoop dispatches the init's replies until it closes the socket.
func (s *Sandbox) readLoop() {
	for {
		m, files, err := s.c.Recv()
		inpod.CloseAll(files)
		if err != nil {
			s.c.Close() // the init ended; ended() tells the waiters
			return
		}
		s.mu.Lock()
		switch m.Op {
		case inpod.OpStarted, inpod.OpError:
			if ch, ok := s.waiting[m.ID]; ok {
				delete(s.waiting, m.ID)
				ch <- m
			}
		case inpod.OpExited:
			if p, ok := s.procs[m.ID]; ok {
				delete(s.procs, m.ID)
				p.code = m.Code
				close(p.done)
			}
		}
		s.mu.Unlock()
	}
}

// Exec starts p in the pod and returns once it runs.
func (s *Sandbox) Exec(p Process) (*Proc, error) {
	if len(p.Argv) == 0 {
		return nil, errors.New("podinit: no command")
	}
	var devnull *os.File
	stdio := []*os.File{p.Stdin, p.Stdout, p.Stderr}
	for i, f := range stdio {
		if f == nil {
			if devnull == nil {
				var err error
				if devnull, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
					return nil, err
				}
				defer devnull.Close()
			}
			stdio[i] = devnull
		}
	}
	ch := make(chan inpod.Message, 1)
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		return nil, fmt.Errorf("podinit: the pod has ended (%v)", s.err)
	default:
	}
	s.nextID++
	proc := &Proc{sb: s, id: s.nextID, done: make(chan struct{})}
	s.waiting[proc.id] = ch
	s.procs[proc.id] = proc // before the request: its exit may come right after "started"
	s.mu.Unlock()
	err := s.c.Send(inpod.Message{Op: inpod.OpExec, ID: proc.id, Argv: p.Argv, Env: p.Env, Dir: p.Dir, Self: p.Self}, stdio...)
	if err != nil {
		s.forget(proc.id)
		return nil, fmt.Errorf("podinit: asking the pod init to start %q: %w", p.Argv[0], err)
	}
	m := <-ch
	if m.Op == inpod.OpError {
		s.forget(proc.id)
		return nil, errors.New(m.Error)
	}
	proc.pid = m.Pid
	return proc, nil
}

func (s *Sandbox) forget(id int) {
	s.mu.Lock()
	delete(s.waiting, id)
	delete(s.procs, id)
	s.mu.Unlock()
}

// Pid is the process id inside the pod.
func (p *Proc) Pid() int { return p.pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitCode is the exit status, 128+signal when killed; valid once Done is closed.
func (p *Proc) ExitCode() int { return p.code }

// Signal sends sig to the process's group (each process starts its own session).
func (p *Proc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	return p.sb.c.Send(inpod.Message{Op: inpod.OpSignal, ID: p.id, Signal: int(sig)})
}

// Stop sends SIGTERM, then SIGKILL after grace (at once when grace <= 0),
// and waits for the process to exit.
func (p *Proc) Stop(grace time.Duration) {
	if grace > 0 {
		_ = p.Signal(syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
			return
		case <-t.C:
		}
	}
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

// Check reports whether this machine lets this user create the namespaces
// of an isolated pod, by starting a child in them that exits at once.
func Check() error {
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: []string{inpod.RoleCheck}, Env: []string{},
		SysProcAttr: sysProcAttr(true, 0, 0, unix.CLONE_NEWNET)}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if len(out) > 0 {
			return fmt.Errorf("%w: %s", err, out)
		}
		return err
	}
	return nil
}
