// Package inpod is what runs inside a local pod: the init that the node
// re-executes from its own binary (PID 1 of new user, mount, PID, IPC and
// UTS namespaces), the filesystem view it builds, the processes it starts
// and reaps on the node's behalf, and the protocol both ends speak. The
// node's side is package podinit, which links this one.
//
// Its init function takes over before main when argv[0] names one of its
// roles. Go initialises packages in import-path order once their imports
// are, so a role starts only after every initialiser that sorts before
// this package's imports: keeping them to the standard library's lowest
// layers and golang.org/x/sys/unix lets a pod init start before the
// hundreds of Kubernetes and protobuf initialisers of the binary it is
// re-executed from (see BENCHMARKS.md). Importing net/http, path/filepath
// or anything above them here would make every pod start wait for those.
package inpod

import (
	"fmt"
	"os"
)

// Roles, as argv[0] of a re-executed binary.
const (
	RoleInit  = "sandboxtest-pod-init"
	RoleCheck = "sandboxtest-userns-check"
	// RoleRuntimeServer is served by package podinit, which needs net/http.
	RoleRuntimeServer = "sandboxtest-runtime-server"
)

// Prep is the part of a pod init's work that does not depend on its pod:
// the node may have an init do it ahead of need (a spare), then hand it a
// pod's Config.
type Prep struct {
	// Isolated is false when the node runs pods without namespaces
	// (SANDBOXTEST_UNISOLATED=1): processes then see the host as the node does.
	Isolated bool `json:"isolated,omitempty"`
	// UID and GID are the container's user inside the pod; the node's own
	// user is mapped to them.
	UID int `json:"uid"`
	GID int `json:"gid"`
	// PidsLimit, when > 0, is set as RLIMIT_NPROC for every process of the pod.
	PidsLimit int `json:"pidsLimit,omitempty"`
	// Warm, when set, is a role of the node's binary (the runtime server)
	// that the init starts at once, before the pod's view exists: the first
	// exec of that role takes the waiting process over, so the pod's start
	// does not wait for the binary's exec and package initialisers.
	Warm string `json:"warm,omitempty"`
}

// Config is what the init needs to build a pod's view of the system.
type Config struct {
	Prep
	// Root is an empty host directory, owned by the node's user, on which
	// the init mounts the pod's root.
	Root     string `json:"root,omitempty"`
	Hostname string `json:"hostname"`
	PodIP    string `json:"podIP,omitempty"`
	Home     string `json:"home,omitempty"` // the user's home in /etc/passwd; default "/"
	// Mounts are the writable working directory, volumes and files an image
	// would bring, mounted in order after the system directories.
	Mounts []Mount `json:"mounts,omitempty"`
	// Net is the pod's address on the cluster network, which sets it up
	// while the init builds the view (podinit.Sandbox.Configure).
	Net *PodNet `json:"net,omitempty"`
}

// PodNet is a pod's address on the cluster network.
type PodNet struct {
	IP        string `json:"ip"`
	PrefixLen int    `json:"prefixLen"`
	Gateway   string `json:"gateway"` // the bridge: the pod's default route
}

// NetworkConfig configures a cluster network (podinit.StartNetwork).
type NetworkConfig struct {
	// CIDR is the pod network; its first address is the bridge's, the
	// pods' default gateway.
	CIDR string `json:"cidr"`
	// LocalAddrs are extra addresses of the cluster namespace itself, where
	// listeners opened through Listen can serve pods (a Service IP, say).
	LocalAddrs []string `json:"localAddrs,omitempty"`
	// Exe is the executable the helper runs from, and with it every pod
	// init and runtime server it starts (they re-execute their own binary):
	// a build of internal/sandboxtest-pod, which links no Kubernetes code. Empty:
	// the node's own binary, which serves the same roles.
	Exe string `json:"-"`
}

func init() {
	if len(os.Args) == 0 {
		return
	}
	var err error
	switch os.Args[0] {
	case RoleInit:
		err = runInit()
	case RoleCheck:
		os.Exit(0)
	default:
		return
	}
	ExitRole(err)
}

// ExitRole ends a re-executed role: status 0, or 1 with err on stderr.
func ExitRole(err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[0], err)
		os.Exit(1)
	}
	os.Exit(0)
}
