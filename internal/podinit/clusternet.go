package podinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit/inpod"
	"github.com/agentsandbox/go-sandboxtest/internal/proc"
)

// A cluster network is a helper process, re-executed from this binary, in
// user and network namespaces of its own: it holds a bridge for the pod
// CIDR, and starts every pod init, so each pod's namespaces nest inside the
// cluster's and the helper may move a veth end into them. Nothing of it is
// visible in the host's network. The node reaches pods through it: the
// helper makes sockets inside (a socket stays in the network namespace it
// was created in) and hands them over, which then work from the host like
// any other. For dials the node keeps a few unconnected ones and connects
// them itself, so a dial costs no round trip through the helper.

const bridgeName = "sbt0"

// Network is the node's handle on a running cluster network.
type Network struct {
	cmd     *exec.Cmd
	c       *inpod.Conn
	done    chan struct{}
	gateway net.IP
	cidr    *net.IPNet

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan netReply
	ended   map[int]func(error) // spawned inits, by request id
	err     error

	sockMu    sync.Mutex
	socks     []*os.File // unconnected TCP sockets of the cluster network, non-blocking
	refilling bool
	closed    bool
}

// socketBatch is how many unconnected sockets the node asks for at a time;
// it asks for more when half are used.
const socketBatch = inpod.MaxFiles

type netReply struct {
	m     inpod.Message
	files []*os.File
}

// StartNetwork starts the cluster network's helper and waits until its
// bridge is up. It ends with this process.
func StartNetwork(cfg NetworkConfig) (*Network, error) {
	_, cidr, err := net.ParseCIDR(cfg.CIDR)
	if err != nil || cidr.IP.To4() == nil {
		return nil, fmt.Errorf("podinit: pod CIDR %q is not an IPv4 CIDR", cfg.CIDR)
	}
	if ones, _ := cidr.Mask.Size(); ones > 30 {
		return nil, fmt.Errorf("podinit: pod CIDR %s is too small", cfg.CIDR)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("podinit: socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "cluster-net"), os.NewFile(uintptr(pair[1]), "cluster-net")
	defer theirs.Close()
	root := os.Getuid() == 0
	n := &Network{
		c: inpod.NewConn(ours), done: make(chan struct{}), cidr: cidr, gateway: nthIP(cidr, 1),
		waiting: map[int]chan netReply{}, ended: map[int]func(error){},
	}
	exe := cfg.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	n.cmd = &exec.Cmd{
		Path:       exe,
		Args:       []string{roleClusterNet},
		Env:        []string{},
		ExtraFiles: []*os.File{theirs},
		Stderr:     os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Pdeathsig:                  syscall.SIGKILL,
			Setsid:                     true,
			Cloneflags:                 unix.CLONE_NEWUSER | unix.CLONE_NEWNET,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
			GidMappingsEnableSetgroups: root,
			Credential:                 &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: !root},
		},
	}
	if err := proc.StartLocked(n.cmd, n.exited); err != nil {
		ours.Close()
		return nil, fmt.Errorf("podinit: starting the cluster network: %w", err)
	}
	theirs.Close()
	if err := n.c.Send(inpod.Message{Op: inpod.OpConfig, Net: &cfg}); err != nil {
		n.Close()
		return nil, fmt.Errorf("podinit: configuring the cluster network: %w", err)
	}
	m, _, err := n.c.Recv()
	if err != nil || m.Op != inpod.OpReady {
		n.Close()
		if err == nil {
			err = errors.New(m.Error)
		}
		return nil, fmt.Errorf("podinit: setting up the cluster network: %w", err)
	}
	go n.readLoop()
	n.refilling = true // the first batch, for the first dial
	go func() {
		files, _ := n.fetchSockets(context.Background())
		n.keepSockets(files, true)
	}()
	return n, nil
}

// Gateway is the bridge's address, the pods' default route.
func (n *Network) Gateway() net.IP { return n.gateway }

// CIDR is the pod network.
func (n *Network) CIDR() *net.IPNet { return n.cidr }

// Pid is the helper's host pid.
func (n *Network) Pid() int { return n.cmd.Process.Pid }

// Close ends the helper and with it every pod init it started. Idempotent.
func (n *Network) Close() {
	_ = n.cmd.Process.Kill()
	<-n.done
}

func (n *Network) exited(err error) {
	n.mu.Lock()
	if err == nil {
		err = errors.New("the cluster network ended")
	}
	n.err = err
	for id, ch := range n.waiting {
		ch <- netReply{m: inpod.Message{Op: inpod.OpError, Error: fmt.Sprintf("the cluster network ended (%v)", err)}}
		delete(n.waiting, id)
	}
	// Its inits died with it (Pdeathsig).
	ended := n.ended
	n.ended = map[int]func(error){}
	n.mu.Unlock()
	for _, f := range ended {
		f(fmt.Errorf("the cluster network ended (%v)", err))
	}
	n.sockMu.Lock()
	inpod.CloseAll(n.socks)
	n.socks, n.closed = nil, true
	n.sockMu.Unlock()
	close(n.done)
}

func (n *Network) readLoop() {
	for {
		m, files, err := n.c.Recv()
		if err != nil {
			return // the helper ended; exited() tells the waiters
		}
		n.mu.Lock()
		if m.Op == inpod.OpExited {
			if f, ok := n.ended[m.ID]; ok {
				delete(n.ended, m.ID)
				n.mu.Unlock()
				var err error
				if m.Error != "" {
					err = errors.New(m.Error)
				}
				f(err)
				inpod.CloseAll(files)
				continue
			}
		}
		ch, ok := n.waiting[m.ID]
		delete(n.waiting, m.ID)
		n.mu.Unlock()
		if ok {
			ch <- netReply{m: m, files: files}
		} else {
			inpod.CloseAll(files)
		}
	}
}

// call sends a request and waits for its answer. ended, when set, is
// called with the exit of the init a spawn request starts.
func (n *Network) call(ctx context.Context, m inpod.Message, ended func(error), files ...*os.File) (netReply, error) {
	ch := make(chan netReply, 1)
	n.mu.Lock()
	if n.err != nil {
		n.mu.Unlock()
		return netReply{}, fmt.Errorf("podinit: the cluster network ended (%v)", n.err)
	}
	n.nextID++
	m.ID = n.nextID
	n.waiting[m.ID] = ch
	if ended != nil {
		n.ended[m.ID] = ended
	}
	n.mu.Unlock()
	if err := n.c.Send(m, files...); err != nil {
		n.forget(m.ID)
		return netReply{}, fmt.Errorf("podinit: cluster network: %w", err)
	}
	select {
	case r := <-ch:
		if r.m.Op == inpod.OpError {
			inpod.CloseAll(r.files)
			return r, errors.New(r.m.Error)
		}
		return r, nil
	case <-ctx.Done():
		n.forget(m.ID)
		return netReply{}, ctx.Err()
	}
}

func (n *Network) forget(id int) {
	n.mu.Lock()
	delete(n.waiting, id)
	delete(n.ended, id)
	n.mu.Unlock()
}

// DialContext connects to addr ("tcp", host:port) from inside the cluster
// network: how the node reaches pods for port-forwards, probes and proxies.
func (n *Network) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	if sa := inet4(network, addr); sa != nil {
		c, err := n.connect(ctx, sa)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Addr: stringAddr(addr), Err: err}
		}
		return c, nil
	}
	// A name, or another network: the helper dials.
	deadline, _ := ctx.Deadline()
	r, err := n.call(ctx, inpod.Message{Op: inpod.OpDial, Network: network, Addr: addr, TimeoutMS: time.Until(deadline).Milliseconds()}, nil)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: stringAddr(addr), Err: err}
	}
	f, err := oneSocket(r.files)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: stringAddr(addr), Err: err}
	}
	defer f.Close()
	return net.FileConn(f)
}

// inet4 is addr as a socket address when it is an IPv4 address and port
// on a TCP network, else nil.
func inet4(network, addr string) *unix.SockaddrInet4 {
	if network != "tcp" && network != "tcp4" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host).To4()
	p, err := strconv.ParseUint(port, 10, 16)
	if ip == nil || err != nil {
		return nil
	}
	sa := &unix.SockaddrInet4{Port: int(p)}
	copy(sa.Addr[:], ip)
	return sa
}

// connect connects one of the cluster network's sockets to sa, from here,
// until ctx ends.
func (n *Network) connect(ctx context.Context, sa *unix.SockaddrInet4) (net.Conn, error) {
	f, err := n.socket(ctx)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) }); err != nil {
		return nil, err
	}
	if cerr == unix.EINPROGRESS || cerr == unix.EALREADY {
		// Wait until it is writable, as net.Dialer does; ctx ends the wait.
		deadline, _ := ctx.Deadline()
		if err := f.SetWriteDeadline(deadline); err != nil {
			return nil, err
		}
		stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
		defer stop()
		err := rc.Write(func(fd uintptr) bool {
			v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
			switch {
			case err != nil:
				cerr = err
			case v == int(unix.EINPROGRESS) || v == int(unix.EALREADY) || v == int(unix.EINTR):
				return false
			case v != 0:
				cerr = unix.Errno(v)
			default:
				if _, err := unix.Getpeername(int(fd)); err != nil {
					return false // not yet connected
				}
				cerr = nil
			}
			return true
		})
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded): // ctx's deadline, just before ctx says so
			return nil, context.DeadlineExceeded
		default:
			return nil, err
		}
	}
	if cerr != nil {
		return nil, os.NewSyscallError("connect", cerr)
	}
	return net.FileConn(f)
}

// socket takes an unconnected socket of the cluster network, asking the
// helper for more in the background when half are used, and at once when
// none is left.
func (n *Network) socket(ctx context.Context) (*os.File, error) {
	n.sockMu.Lock()
	if n.closed {
		n.sockMu.Unlock()
		return nil, errors.New("the cluster network ended")
	}
	if k := len(n.socks); k > 0 {
		f := n.socks[k-1]
		n.socks = n.socks[:k-1]
		refill := k-1 <= socketBatch/2 && !n.refilling
		n.refilling = n.refilling || refill
		n.sockMu.Unlock()
		if refill {
			go func() {
				files, _ := n.fetchSockets(context.Background())
				n.keepSockets(files, true)
			}()
		}
		return f, nil
	}
	n.sockMu.Unlock()
	files, err := n.fetchSockets(ctx)
	if err != nil {
		return nil, err
	}
	n.keepSockets(files[1:], false)
	return files[0], nil
}

// keepSockets adds files to the spare sockets (closes them once the network ended).
func (n *Network) keepSockets(files []*os.File, refilled bool) {
	n.sockMu.Lock()
	defer n.sockMu.Unlock()
	if refilled {
		n.refilling = false
	}
	if n.closed {
		inpod.CloseAll(files)
		return
	}
	n.socks = append(n.socks, files...)
}

// fetchSockets asks the helper for a batch of sockets, made non-blocking
// here so that the runtime's poller waits on their connects.
func (n *Network) fetchSockets(ctx context.Context) ([]*os.File, error) {
	r, err := n.call(ctx, inpod.Message{Op: inpod.OpSockets, Count: socketBatch}, nil)
	if err != nil {
		return nil, err
	}
	if len(r.files) == 0 {
		return nil, errors.New("no socket came back from the cluster network")
	}
	out := make([]*os.File, 0, len(r.files))
	for _, f := range r.files {
		// A file made by os.NewFile on a blocking descriptor is not
		// pollable: a non-blocking duplicate is.
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err == nil {
			if err = unix.SetNonblock(fd, true); err != nil {
				unix.Close(fd)
			}
		}
		f.Close()
		if err != nil {
			inpod.CloseAll(out)
			return nil, fmt.Errorf("podinit: a socket of the cluster network: %w", err)
		}
		out = append(out, os.NewFile(uintptr(fd), "cluster-net socket"))
	}
	return out, nil
}

// Listen opens a listener inside the cluster network (on the bridge's
// address or one of the LocalAddrs); connections from pods are accepted
// from the host.
func (n *Network) Listen(network, addr string) (net.Listener, error) {
	r, err := n.call(context.Background(), inpod.Message{Op: inpod.OpListen, Network: network, Addr: addr}, nil)
	if err != nil {
		return nil, fmt.Errorf("podinit: listening on %s in the cluster network: %w", addr, err)
	}
	f, err := oneSocket(r.files)
	if err != nil {
		return nil, fmt.Errorf("podinit: listening on %s: %w", addr, err)
	}
	defer f.Close()
	return net.FileListener(f)
}

// oneSocket is the descriptor a dial or listen request brought back.
func oneSocket(files []*os.File) (*os.File, error) {
	if len(files) != 1 {
		inpod.CloseAll(files)
		return nil, errors.New("no socket came back from the cluster network")
	}
	return files[0], nil
}

type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }

// Start starts a pod init on the cluster network with cfg (cfg.Net its
// address) and returns once its view is built: Launch, then Configure.
func (n *Network) Start(cfg Config, join *Join, stderr io.Writer) (*Sandbox, error) {
	sb, err := n.Launch(cfg.Prep, "", join, stderr)
	if err != nil {
		return nil, err
	}
	if err := sb.Configure(cfg); err != nil {
		return nil, err
	}
	return sb, nil
}

// Launch starts a pod init on the cluster network, as the package's Launch
// does: the helper clones it in new namespaces, network included, and
// plugs the pod's end of a veth pair (eth0) into it; Configure gives the
// pod its address.
func (n *Network) Launch(prep Prep, viewRoot string, join *Join, stderr io.Writer) (*Sandbox, error) {
	if !prep.Isolated {
		join.Close()
		return nil, errors.New("podinit: a pod on the cluster network must be isolated")
	}
	return launchInit(prep, viewRoot, join, func(conn *os.File, ended func(error)) (launched, error) {
		pr, pw, err := os.Pipe()
		if err != nil {
			return launched{}, err
		}
		copied := make(chan struct{})
		go func() { _, _ = io.Copy(stderr, pr); pr.Close(); close(copied) }()
		defer pw.Close()
		// The init's complaints are all in stderr by the time it is
		// reported ended (the caller reads them then).
		endedAfterCopy := func(err error) { go func() { <-copied; ended(err) }() }
		req := inpod.Message{Op: inpod.OpSpawn, Argv: []string{inpod.RoleInit}, Prep: &prep}
		r, err := n.call(context.Background(), req, endedAfterCopy, conn, pw)
		if err != nil {
			return launched{}, err
		}
		id := r.m.ID
		attach := func(pn *PodNet) error {
			_, err := n.call(context.Background(), inpod.Message{Op: inpod.OpAttach, Pid: r.m.Pid, Config: &Config{Net: pn}}, nil)
			return err
		}
		return launched{pid: r.m.Pid, kill: func() { n.killPod(id) }, attach: attach}, nil
	})
}

func (n *Network) killPod(id int) {
	_ = n.c.Send(inpod.Message{Op: inpod.OpSignal, ID: id, Signal: int(syscall.SIGKILL)})
}

// nthIP is the n-th address of the network.
func nthIP(cidr *net.IPNet, i uint32) net.IP {
	b := cidr.IP.To4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += i
	return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).To4()
}

// The helper's side.

type netHelper struct {
	c      *inpod.Conn
	bridge netlink.Link

	mu    sync.Mutex
	inits map[int]*exec.Cmd // by request id
}

func runClusterNet() error {
	syscall.CloseOnExec(3)
	c := inpod.NewConn(os.NewFile(3, "node"))
	m, _, err := c.Recv()
	if err != nil {
		return fmt.Errorf("reading the config: %w", err)
	}
	if m.Op != inpod.OpConfig || m.Net == nil {
		return fmt.Errorf("expected the network config, got %q", m.Op)
	}
	h := &netHelper{c: c, inits: map[int]*exec.Cmd{}}
	if err := h.setup(*m.Net); err != nil {
		_ = c.Send(inpod.Message{Op: inpod.OpError, Error: err.Error()})
		return err
	}
	if err := c.Send(inpod.Message{Op: inpod.OpReady}); err != nil {
		return err
	}
	for {
		m, files, err := c.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the node is gone; Pdeathsig ends the inits
			}
			return err
		}
		switch m.Op {
		case inpod.OpSpawn:
			// Not inline: creating a network namespace can wait on the
			// kernel tearing down others, and dials must not queue behind it.
			go h.spawn(m, files)
		case inpod.OpAttach:
			go h.attach(m)
		case inpod.OpDial:
			go h.dial(m)
		case inpod.OpListen:
			h.listen(m)
		case inpod.OpSockets:
			h.sockets(m)
		case inpod.OpSignal:
			h.mu.Lock()
			cmd := h.inits[m.ID]
			h.mu.Unlock()
			if cmd != nil {
				_ = cmd.Process.Signal(syscall.Signal(m.Signal))
			}
		}
		if m.Op != inpod.OpSpawn {
			inpod.CloseAll(files)
		}
	}
}

// bridgeMAC is the bridge's link address, locally administered.
var bridgeMAC = net.HardwareAddr{0x02, 0x53, 0x42, 0x54, 0x00, 0x01}

// setup brings up lo and the bridge with the CIDR's first address.
func (h *netHelper) setup(cfg NetworkConfig) error {
	_, cidr, err := net.ParseCIDR(cfg.CIDR)
	if err != nil {
		return err
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	for _, a := range cfg.LocalAddrs {
		ip := net.ParseIP(a)
		if ip == nil {
			return fmt.Errorf("local address %q is not an IP", a)
		}
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}}); err != nil {
			return fmt.Errorf("adding %s: %w", a, err)
		}
	}
	// A fixed address: a bridge without one takes the lowest of its ports'
	// and changes it as pods come and go, while the pods' ARP caches keep
	// the old one and their answers to the node get lost for seconds.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName, HardwareAddr: bridgeMAC}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("creating bridge %s: %w", bridgeName, err)
	}
	gw := nthIP(cidr, 1)
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: gw, Mask: cidr.Mask}}); err != nil {
		return fmt.Errorf("adding %s to the bridge: %w", gw, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge up: %w", err)
	}
	h.bridge = br
	return nil
}

// spawn clones a pod init in new namespaces (fd 3: its socket to the node,
// fd 2: its stderr) and plugs it into the bridge; attach gives it its
// address later.
func (h *netHelper) spawn(m inpod.Message, files []*os.File) {
	defer inpod.CloseAll(files)
	fail := func(err error) { h.fail(m.ID, err) }
	if len(files) != 2 || m.Prep == nil {
		fail(errors.New("spawn: want the init's prep, its socket and its stderr"))
		return
	}
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        m.Argv,
		Env:         []string{},
		ExtraFiles:  []*os.File{files[0]},
		Stderr:      files[1],
		SysProcAttr: sysProcAttr(true, m.Prep.UID, m.Prep.GID, unix.CLONE_NEWNET),
	}
	id := m.ID
	if err := proc.StartLocked(cmd, func(err error) {
		h.mu.Lock()
		delete(h.inits, id)
		h.mu.Unlock()
		reply := inpod.Message{Op: inpod.OpExited, ID: id}
		if err != nil {
			reply.Error = err.Error()
		}
		_ = h.c.Send(reply)
	}); err != nil {
		fail(err)
		return
	}
	h.mu.Lock()
	h.inits[id] = cmd
	h.mu.Unlock()
	pid := cmd.Process.Pid
	veth := &netlink.Veth{
		// Named by request, not pid: a dead pod's veth may linger while the
		// kernel tears its namespace down, and pids are reused.
		LinkAttrs:     netlink.LinkAttrs{Name: fmt.Sprintf("sbt%d", id), MasterIndex: h.bridge.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsPid(pid),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		_ = cmd.Process.Kill()
		fail(fmt.Errorf("creating the pod's veth pair: %w", err))
		return
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		_ = cmd.Process.Kill()
		fail(fmt.Errorf("bringing up %s: %w", veth.Name, err))
		return
	}
	_ = h.c.Send(inpod.Message{Op: inpod.OpStarted, ID: id, Pid: pid})
}

// attach gives the pod of the init with host pid m.Pid its address.
func (h *netHelper) attach(m inpod.Message) {
	h.mu.Lock()
	var cmd *exec.Cmd
	for _, c := range h.inits {
		if c.Process.Pid == m.Pid {
			cmd = c
		}
	}
	h.mu.Unlock()
	if cmd == nil || m.Config == nil || m.Config.Net == nil {
		h.fail(m.ID, fmt.Errorf("attach: no pod init %d, or no address", m.Pid))
		return
	}
	if err := configurePod(m.Pid, m.Config.Net, h.bridge.Attrs().Index); err != nil {
		h.fail(m.ID, err)
		return
	}
	_ = h.c.Send(inpod.Message{Op: inpod.OpStarted, ID: m.ID})
}

func (h *netHelper) dial(m inpod.Message) {
	d := net.Dialer{Timeout: time.Duration(m.TimeoutMS) * time.Millisecond}
	conn, err := d.Dial(m.Network, m.Addr)
	if err != nil {
		h.fail(m.ID, unwrapOpError(err))
		return
	}
	h.sendSocket(m.ID, conn.(socket))
}

// sockets answers with m.Count unconnected TCP sockets of this network.
func (h *netHelper) sockets(m inpod.Message) {
	var files []*os.File
	defer func() { inpod.CloseAll(files) }()
	for range min(max(m.Count, 1), inpod.MaxFiles) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			h.fail(m.ID, fmt.Errorf("socket: %w", err))
			return
		}
		files = append(files, os.NewFile(uintptr(fd), "socket"))
	}
	_ = h.c.Send(inpod.Message{Op: inpod.OpStarted, ID: m.ID}, files...)
}

func (h *netHelper) listen(m inpod.Message) {
	ln, err := net.Listen(m.Network, m.Addr)
	if err != nil {
		h.fail(m.ID, err)
		return
	}
	h.sendSocket(m.ID, ln.(socket))
}

// socket is a TCP connection or listener: its descriptor can be handed on.
type socket interface {
	File() (*os.File, error)
	Close() error
}

// sendSocket answers request id with a duplicate of sock's descriptor and
// closes sock: the node's copy is the one that lives on.
func (h *netHelper) sendSocket(id int, sock socket) {
	defer sock.Close()
	f, err := sock.File()
	if err != nil {
		h.fail(id, err)
		return
	}
	defer f.Close()
	_ = h.c.Send(inpod.Message{Op: inpod.OpStarted, ID: id}, f)
}

func (h *netHelper) fail(id int, err error) {
	_ = h.c.Send(inpod.Message{Op: inpod.OpError, ID: id, Error: err.Error()})
}

// unwrapOpError keeps the cause ("connection refused") without the helper's
// view of the addresses, which the node's own OpError repeats.
func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// configurePod sets up the pod's side from here, through a netlink socket
// opened in the pod's network namespace (so the init needs no network code):
// lo and eth0 up, the pod's address, the default route through the bridge.
// A pod addressed before (a node's spare init, given its address ahead and
// then taken by a pod with another) has its old address replaced. bridge
// is the index of the bridge, where the pod's link address is entered.
func configurePod(pid int, pn *PodNet, bridge int) error {
	ip, gw := net.ParseIP(pn.IP), net.ParseIP(pn.Gateway)
	if ip == nil || gw == nil {
		return fmt.Errorf("bad pod address %q or gateway %q", pn.IP, pn.Gateway)
	}
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("opening the pod's network namespace: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in the pod's network namespace: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("the pod's eth0: %w", err)
	}
	old, err := h.AddrList(eth, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing eth0's addresses: %w", err)
	}
	for _, a := range old {
		if !a.IP.Equal(ip) {
			if err := h.AddrDel(eth, &a); err != nil {
				return fmt.Errorf("removing %s from eth0: %w", a.IP, err)
			}
		}
	}
	if err := h.AddrReplace(eth, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(pn.PrefixLen, 32)}}); err != nil {
		return fmt.Errorf("adding %s to eth0: %w", pn.IP, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("eth0 up: %w", err)
	}
	// Replace: removing the old address took its route away, or it stays.
	if err := h.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("default route via %s: %w", pn.Gateway, err)
	}
	// The pod and the cluster network know each other's link address from
	// the start: the node's first connection to the pod needs no ARP
	// exchange, whose first request or answer a just-raised link may drop
	// (the kernel's next try comes a second later).
	if err := h.NeighSet(&netlink.Neigh{LinkIndex: eth.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: bridgeMAC}); err != nil {
		return fmt.Errorf("the bridge's link address in the pod: %w", err)
	}
	// Reachable, not permanent: the kernel forgets it once the pod is gone.
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: bridge, Family: netlink.FAMILY_V4, State: netlink.NUD_REACHABLE, IP: ip, HardwareAddr: eth.Attrs().HardwareAddr}); err != nil {
		return fmt.Errorf("the pod's link address in the cluster network: %w", err)
	}
	waitOperUp(h, eth.Attrs().Index, eth.Attrs().ParentIndex)
	return nil
}

// waitOperUp waits, at most a second, until both ends of the pod's veth
// pair are up for the kernel (operstate UP, set when it gives a device its
// queue and adds it to the bridge): until then what is sent through them
// is dropped, and a connection's first SYN is sent again only a second
// later.
func waitOperUp(pod *netlink.Handle, eth, peer int) {
	up := func(l netlink.Link, err error) bool { return err == nil && l.Attrs().OperState == netlink.OperUp }
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
		if up(pod.LinkByIndex(eth)) && up(netlink.LinkByIndex(peer)) {
			return
		}
	}
}
