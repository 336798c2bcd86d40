// Command sandboxtest-pod is what the local cluster's node runs for its
// pods: the cluster network's helper, each pod's init and the python
// runtime's server. Each role takes over in a package initialiser, chosen
// by argv[0] (packages podinit and inpod). It links nothing of Kubernetes,
// so these processes start faster and hold less memory than the node's own
// binary, which would serve the same roles (and does when this one cannot
// be built: setupbin.PodBinary).
package main

import (
	"fmt"
	"os"

	_ "github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

func main() {
	fmt.Fprintln(os.Stderr, "sandboxtest-pod is started by the local cluster's node, not by hand: run sandboxtest-setup local up")
	os.Exit(2)
}
