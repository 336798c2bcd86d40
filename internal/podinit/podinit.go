// Package podinit is the inside of a local pod: the process that the node
// re-executes from its own binary as the pod's init (PID 1 of new user,
// mount, PID, IPC and UTS namespaces), the filesystem view it builds, and
// the processes it starts and reaps on the node's behalf. It also holds the
// node's end of the conversation (Start, Sandbox.Exec).
//
// Any binary that links this package can serve as a pod init: an init
// function takes over before main when argv[0] names one of its roles, so
// test binaries and sandboxtest-setup need no hook of their own.
package podinit

import (
	"fmt"
	"os"
)

// Roles, as argv[0] of a re-executed binary.
const (
	roleInit          = "sandboxtest-pod-init"
	roleCheck         = "sandboxtest-userns-check"
	roleRuntimeServer = "sandboxtest-runtime-server"
	roleClusterNet    = "sandboxtest-cluster-net"
)

// Config is what the init needs to build a pod's view of the system.
type Config struct {
	// Isolated is false when the node runs pods without namespaces
	// (SANDBOXTEST_UNISOLATED=1): processes then see the host as the node does.
	Isolated bool `json:"isolated,omitempty"`
	// Root is an empty host directory, owned by the node's user, on which
	// the init mounts the pod's root.
	Root     string `json:"root,omitempty"`
	Hostname string `json:"hostname"`
	PodIP    string `json:"podIP,omitempty"`
	// UID and GID are the container's user inside the pod; the node's own
	// user is mapped to them.
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	Home string `json:"home,omitempty"` // the user's home in /etc/passwd; default "/"
	// Mounts are the writable working directory, volumes and files an image
	// would bring, mounted in order after the system directories.
	Mounts []Mount `json:"mounts,omitempty"`
	// Net is the pod's address on the cluster network (Network.Start),
	// which sets it up before the init starts.
	Net *PodNet `json:"net,omitempty"`
	// PidsLimit, when > 0, is set as RLIMIT_NPROC for every process of the pod.
	PidsLimit int `json:"pidsLimit,omitempty"`
}

// PodNet is a pod's address on the cluster network.
type PodNet struct {
	IP        string `json:"ip"`
	PrefixLen int    `json:"prefixLen"`
	Gateway   string `json:"gateway"` // the bridge: the pod's default route
}

func init() {
	if len(os.Args) == 0 {
		return
	}
	var err error
	switch os.Args[0] {
	case roleInit:
		err = runInit()
	case roleCheck:
		os.Exit(0)
	case roleRuntimeServer:
		err = runRuntimeServer(os.Args[1:])
	case roleClusterNet:
		err = runClusterNet()
	default:
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[0], err)
		os.Exit(1)
	}
	os.Exit(0)
}
