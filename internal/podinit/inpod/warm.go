package inpod

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// A warm process is a role of the node's binary (Prep.Warm: the runtime
// server) that a pod init starts as soon as it is prepared, before its pod
// is known: the binary's exec and package initialisers, the larger part of
// a python-runtime pod's start, are then paid ahead. The process waits on
// its socket (fd 3); the first exec of its role sends it that exec's argv,
// environment, working directory and stdio, and from then on it is that
// exec's process, registered and reaped as any other.

// WarmArg is argv[1] of a warm process (argv[0] names its role).
const WarmArg = "--warm"

// warmProc is a warm process not yet taken over.
type warmProc struct {
	role string
	pid  int
	c    *Conn
}

// startWarm starts the Warm role with its end of a socketpair as fd 3.
func (st *initState) startWarm() error {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "warm"), os.NewFile(uintptr(pair[1]), "warm")
	defer theirs.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		ours.Close()
		return err
	}
	done := make(chan started, 1)
	st.jobs <- job{m: Message{Argv: []string{st.cfg.Warm, WarmArg}, Dir: "/", Self: true}, stdio: []*os.File{null, null, null}, extra: theirs, done: done}
	r := <-done
	if r.err != nil {
		ours.Close()
		return fmt.Errorf("starting %s: %w", st.cfg.Warm, r.err)
	}
	st.warm = &warmProc{role: st.cfg.Warm, pid: r.pid, c: NewConn(ours)}
	return nil
}

// takeWarm hands an exec of the warm role to the waiting process, which
// then runs as if started by it; 0 when there is none (or it died).
func (st *initState) takeWarm(j job) int {
	w := st.warm
	if w == nil || !j.m.Self || len(j.m.Argv) == 0 || j.m.Argv[0] != w.role || len(j.stdio) != 3 {
		return 0
	}
	st.warm = nil
	defer w.c.Close()
	st.mu.Lock()
	defer st.mu.Unlock()
	// A process that exited has closed its socket: the send fails, and an
	// exit reaped after a successful one is reported, since registering
	// happens under the reaper's lock.
	if err := w.c.Send(Message{Op: OpExec, Argv: j.m.Argv, Env: j.m.Env, Dir: j.m.Dir}, j.stdio...); err != nil {
		return 0
	}
	st.procs[w.pid] = j.m.ID
	st.ids[j.m.ID] = w.pid
	return w.pid
}

// AwaitStart is called first by a role that may be started warm: in a warm
// process it waits for the exec it stands in for and takes on that exec's
// argv (os.Args), environment, working directory and stdio; in any other
// it does nothing. An error means the process should exit.
func AwaitStart() error {
	if len(os.Args) != 2 || os.Args[1] != WarmArg {
		return nil
	}
	syscall.CloseOnExec(3)
	c := NewConn(os.NewFile(3, "init"))
	defer c.Close()
	m, files, err := c.Recv()
	if err != nil {
		return fmt.Errorf("waiting to be started: %w", err)
	}
	defer CloseAll(files)
	if m.Op != OpExec || len(files) != 3 || len(m.Argv) == 0 {
		return fmt.Errorf("expected an exec with its stdio, got %q with %d descriptors", m.Op, len(files))
	}
	for i, f := range files {
		if err := unix.Dup3(int(f.Fd()), i, 0); err != nil {
			return fmt.Errorf("taking over stdio: %w", err)
		}
	}
	os.Clearenv()
	for _, kv := range m.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			os.Setenv(k, v)
		}
	}
	dir := m.Dir
	if dir == "" {
		dir = "/"
	}
	if err := os.Chdir(dir); err != nil {
		return err
	}
	os.Args = m.Argv
	return nil
}
