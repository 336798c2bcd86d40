// Package podinit is the node's side of a local pod: it starts the pod's
// init (package inpod, re-executed from the node's own binary), in two
// steps when the node starts it ahead of its pod (Launch, then
// Sandbox.Configure), and asks it to start and signal the pod's processes
// (Start, Sandbox.Exec). It also
// serves the runtime server role, the python runtime's API inside a pod,
// and the cluster network role, which holds the pods' network (Network).
//
// Any binary that links this package can serve as a pod init and runtime
// server: init functions take over before main when argv[0] names a role,
// so test binaries and sandboxtest-setup need no hook of their own.
package podinit

import (
	"os"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit/inpod"
)

// Prep is what a pod init does before it knows its pod (see Launch).
type Prep = inpod.Prep

// Config is what the init needs to build a pod's view of the system.
type Config = inpod.Config

// Mount is one entry of a container's filesystem view besides the system
// directories: a volume (or a file of one) at its mountPath.
type Mount = inpod.Mount

// PodNet is a pod's address on the cluster network.
type PodNet = inpod.PodNet

// NetworkConfig configures a cluster network.
type NetworkConfig = inpod.NetworkConfig

// roleClusterNet is argv[0] of the cluster network's helper.
const roleClusterNet = "sandboxtest-cluster-net"

func init() {
	if len(os.Args) == 0 {
		return
	}
	var err error
	switch os.Args[0] {
	case inpod.RoleRuntimeServer:
		if err = inpod.AwaitStart(); err == nil {
			err = runRuntimeServer(os.Args[1:])
		}
	case roleClusterNet:
		err = runClusterNet()
	default:
		return
	}
	inpod.ExitRole(err)
}
