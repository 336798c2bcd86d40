package podinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The node and a pod's init talk over a SOCK_SEQPACKET socketpair: one JSON
// message per packet, file descriptors (a process's stdio) riding along as
// SCM_RIGHTS. The node sends the Config first, then requests; the init
// answers each request and reports every exit.

// Request ops (node → init).
const (
	opConfig = "config" // Config; answered by opReady or opError
	opExec   = "exec"   // start a process; three fds (stdin, stdout, stderr)
	opSignal = "signal" // signal a started process's group

	// to the cluster network
	opSpawn  = "spawn"  // start a pod init; its socket and stderr ride along
	opDial   = "dial"   // connect inside; the socket comes back
	opListen = "listen" // listen inside; the socket comes back
)

// Reply ops (init → node).
const (
	opReady   = "ready"
	opStarted = "started"
	opExited  = "exited"
	opError   = "error"
)

type message struct {
	Op  string `json:"op"`
	ID  int    `json:"id,omitempty"`
	Pid int    `json:"pid,omitempty"`

	Config *Config        `json:"config,omitempty"`
	Net    *NetworkConfig `json:"net,omitempty"`

	// opDial, opListen
	Network string        `json:"network,omitempty"`
	Addr    string        `json:"addr,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`

	// opExec
	Argv []string `json:"argv,omitempty"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	Self bool     `json:"self,omitempty"` // run this binary, Argv[0] naming its role

	Signal int    `json:"signal,omitempty"`
	Code   int    `json:"code,omitempty"` // opExited: exit status, 128+signal when signalled
	Error  string `json:"error,omitempty"`
}

// maxMessage bounds one packet; a Config with many mounts and a long
// environment fits easily.
const maxMessage = 1 << 20

// conn is one end of the socketpair.
type conn struct {
	f  *os.File
	fd int
	mu sync.Mutex // one sender at a time
}

func newConn(f *os.File) *conn { return &conn{f: f, fd: int(f.Fd())} }

func (c *conn) send(m message, files ...*os.File) error {
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

// recv reads one message and the files that came with it. io.EOF means the
// other end closed.
func (c *conn) recv() (message, []*os.File, error) {
	buf := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(4*8))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(c.fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return message{}, nil, err
	}
	var files []*os.File
	if oobn > 0 {
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return message{}, nil, err
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
		closeAll(files)
		return message{}, nil, io.EOF
	}
	var m message
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		closeAll(files)
		return message{}, nil, fmt.Errorf("podinit: bad message: %w", err)
	}
	return m, files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
