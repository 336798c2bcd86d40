package inpod

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// The node and a pod's init talk over a SOCK_SEQPACKET socketpair: one JSON
// message per packet, file descriptors (a process's stdio) riding along as
// SCM_RIGHTS. The node sends the Prep first, then (at once, or once a pod
// needs this init) the Config, then requests; the init answers each request
// and reports every exit.

// Request ops (node → init).
const (
	OpPrepare = "prepare" // Prep; answered by OpReady or OpError
	OpConfig  = "config"  // Config; answered by OpReady or OpError
	OpExec    = "exec"    // start a process; three fds (stdin, stdout, stderr). Also init → warm process.
	OpSignal  = "signal"  // signal a started process's group

	// to the cluster network (package podinit), which speaks this protocol too
	OpSpawn   = "spawn"   // start a pod init and plug it into the bridge; its socket and stderr ride along
	OpAttach  = "attach"  // give a spawned init's pod its address (Config.Net)
	OpDial    = "dial"    // connect inside; the socket comes back
	OpListen  = "listen"  // listen inside; the socket comes back
	OpSockets = "sockets" // Count unconnected TCP sockets made inside come back (at most MaxFiles)
)

// Reply ops (init → node).
const (
	OpReady   = "ready"
	OpStarted = "started"
	OpExited  = "exited"
	OpError   = "error"
)

type Message struct {
	Op  string `json:"op"`
	ID  int    `json:"id,omitempty"`
	Pid int    `json:"pid,omitempty"`

	Prep *Prep `json:"prep,omitempty"`
	// OpPrepare: an empty host directory to build the part of the pod's
	// view that no pod decides on, ahead (see Launch)
	ViewRoot string         `json:"viewRoot,omitempty"`
	Config   *Config        `json:"config,omitempty"`
	Net      *NetworkConfig `json:"net,omitempty"`

	// OpDial, OpListen
	Network   string `json:"network,omitempty"`
	Addr      string `json:"addr,omitempty"`
	TimeoutMS int64  `json:"timeoutMS,omitempty"`
	Count     int    `json:"count,omitempty"` // OpSockets

	// OpExec
	Argv []string `json:"argv,omitempty"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	Self bool     `json:"self,omitempty"` // run this binary, Argv[0] naming its role

	Signal int    `json:"signal,omitempty"`
	Code   int    `json:"code,omitempty"` // OpExited: exit status, 128+signal when signalled
	Error  string `json:"error,omitempty"`
}

// maxMessage bounds one packet; a Config with many mounts and a long
// environment fits easily.
const maxMessage = 1 << 20

// MaxFiles is the most descriptors one message brings (Recv's room for them).
const MaxFiles = 8

// Conn is one end of the socketpair.
type Conn struct {
	f  *os.File
	fd int
	mu sync.Mutex // one sender at a time
}

func NewConn(f *os.File) *Conn { return &Conn{f: f, fd: int(f.Fd())} }

func (c *Conn) Send(m Message, files ...*os.File) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		err = unix.Sendmsg(c.fd, data, oob, nil, unix.MSG_NOSIGNAL)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	return err
}

// Recv reads one message and the files that came with it. io.EOF means the
// other end closed. One reader at a time.
func (c *Conn) Recv() (Message, []*os.File, error) {
	// Wait for the next message and learn its length without taking it: a
	// reader that waits (a pod init, and the node's loop for each pod, wait
	// for a pod's whole life) holds no buffer, and each message gets one of
	// its own size. Without room for them, a peek installs no descriptors.
	size, _, err := c.recvmsg(nil, nil, unix.MSG_PEEK|unix.MSG_TRUNC)
	if err != nil {
		return Message{}, nil, err
	}
	if size == 0 {
		return Message{}, nil, io.EOF
	}
	if size > maxMessage {
		_, _, _ = c.recvmsg(nil, nil, 0) // drops it, and any descriptors with it
		return Message{}, nil, fmt.Errorf("podinit: message of %d bytes, over the limit of %d", size, maxMessage)
	}
	buf := make([]byte, size)
	oob := make([]byte, unix.CmsgSpace(4*MaxFiles))
	n, oobn, err := c.recvmsg(buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return Message{}, nil, err
	}
	var files []*os.File
	if oobn > 0 {
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return Message{}, nil, err
		}
		for _, cm := range cmsgs {
			fds, err := unix.ParseUnixRights(&cm)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				files = append(files, os.NewFile(uintptr(fd), "passed"))
			}
		}
	}
	if n == 0 {
		CloseAll(files)
		return Message{}, nil, io.EOF
	}
	var m Message
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		CloseAll(files)
		return Message{}, nil, fmt.Errorf("podinit: bad message: %w", err)
	}
	return m, files, nil
}

func CloseAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// Close closes this end.
func (c *Conn) Close() error { return c.f.Close() }

// recvmsg is unix.Recvmsg, resumed after a signal.
func (c *Conn) recvmsg(p, oob []byte, flags int) (n, oobn int, err error) {
	for {
		n, oobn, _, _, err = unix.Recvmsg(c.fd, p, oob, flags)
		if !errors.Is(err, unix.EINTR) {
			return n, oobn, err
		}
	}
}
