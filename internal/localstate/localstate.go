// Package localstate names what a serving local cluster keeps in its state
// directory (pid, ready marker, kubeconfig, log) and where that directory and
// the build cache live by default. Both the cluster (internal/localcluster)
// and the test library, which must not link the cluster, read it.
package localstate

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Files in a local cluster's state directory.
const (
	PidFile        = "serve.pid"  // pid of the serving process
	ReadyFile      = "ready"      // written once the cluster is ready; holds the kubeconfig path
	LogFile        = "serve.log"  // output of a background (`local up`) serving process
	KubeconfigFile = "kubeconfig" // admin kubeconfig of the cluster
)

// DefaultCacheDir is $SANDBOXTEST_CACHE, else os.UserCacheDir()/sandboxtest.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("SANDBOXTEST_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (%v); set SANDBOXTEST_CACHE", err)
	}
	return filepath.Join(d, "sandboxtest"), nil
}

// DefaultDir is where `sandboxtest-setup local up` keeps its cluster, and
// where Main looks for one to reuse: $SANDBOXTEST_LOCAL_DIR, else <cache>/local.
func DefaultDir() (string, error) {
	if d := os.Getenv("SANDBOXTEST_LOCAL_DIR"); d != "" {
		return d, nil
	}
	d, err := DefaultCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "local"), nil
}

// KubeconfigPath is the kubeconfig a cluster in dir writes.
func KubeconfigPath(dir string) string { return filepath.Join(dir, KubeconfigFile) }

// ServingPid reads dir's pid file and reports whether that process lives.
func ServingPid(dir string) (int, bool) {
	data, err := os.ReadFile(filepath.Join(dir, PidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || !ProcessAlive(pid) {
		return 0, false
	}
	return pid, true
}

// ReadyKubeconfig returns the kubeconfig path from dir's ready marker, and
// whether there is one.
func ReadyKubeconfig(dir string) (string, bool) {
	data, err := os.ReadFile(filepath.Join(dir, ReadyFile))
	if err != nil {
		return "", false
	}
	kc := strings.TrimSpace(string(data))
	return kc, kc != ""
}
