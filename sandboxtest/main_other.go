//go:build !linux

package sandboxtest

import (
	"context"
	"fmt"
	"os"
	"runtime"
)

// startLocal: the local cluster runs Linux binaries and processes. Say how
// to get a cluster, and let the tests run against the kubeconfig (New skips
// or fails, per SANDBOXTEST_REQUIRE and CI, when there is none).
func startLocal(context.Context) (kubeconfig string, stop func(), err error) {
	fmt.Fprintf(os.Stderr, "sandboxtest: the local cluster needs Linux (this is %s); point the suite at Kind (sandboxtest-setup kind create --deploy) or at a cluster (KUBECONFIG=...; sandboxtest-setup deploy); running the tests against the kubeconfig\n", runtime.GOOS)
	return "", func() {}, nil
}
