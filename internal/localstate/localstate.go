// Package localstate names what a serving local cluster keeps in its state
// directory (marker, lock, pid, ready marker, kubeconfig, log), tells a live
// cluster by its lock, and where that directory and
// the build cache live by default. Both the cluster (internal/localcluster)
// and the test library, which must not link the cluster, read it.
package localstate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gofrs/flock"
)

// Files in a local cluster's state directory.
const (
	PidFile        = "serve.pid"  // pid of the serving process
	ReadyFile      = "ready"      // written once the cluster is ready; holds the kubeconfig path
	LogFile        = "serve.log"  // output of a background (`local up`) serving process
	KubeconfigFile = "kubeconfig" // admin kubeconfig of the cluster
	// MarkerFile names the directory as a local cluster's: only such a
	// directory has its state removed, and only the entries in Owned.
	MarkerFile = ".sandboxtest-local-cluster"
	// LockFile is held (flock, exclusive) by the serving process for its
	// whole life: a free lock means no cluster, whatever serve.pid says.
	LockFile = "serve.lock"
	// UpLockFile serialises `local up` calls on one directory.
	UpLockFile = "up.lock"
)

// Owned lists the entries a cluster creates in its directory, the only ones
// its removal deletes. The log, the locks and the marker stay: the log for a
// post-mortem, the locks so that a waiter never locks a deleted file.
var Owned = []string{PidFile, ReadyFile, KubeconfigFile, "pki", "etcd", "logs", "volumes", "node"}

// IsClusterDir reports whether dir carries the marker of a local cluster.
func IsClusterDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, MarkerFile))
	return err == nil
}

// Mark names dir as a local cluster's, creating it (0700) if needed. A
// directory it creates or that was already a cluster's is made 0700; another
// (say the current directory) keeps its mode.
func Mark(dir string) error {
	created := false
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		created = true
	}
	if created || IsClusterDir(dir) {
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, MarkerFile), []byte("a sandboxtest local cluster's state directory; `sandboxtest-setup local down` removes what the cluster created here\n"), 0o600)
}

// NewLock is the serving process's lock in dir.
func NewLock(dir string) *flock.Flock {
	return flock.New(filepath.Join(dir, LockFile), flock.SetPermissions(0o600))
}

// Held reports whether a serving process holds dir's lock. A lock file
// that does not exist is free (and is not created).
func Held(dir string) bool {
	path := filepath.Join(dir, LockFile)
	if _, err := os.Stat(path); err != nil {
		return false
	}
	l := flock.New(path, flock.SetFlag(os.O_RDONLY))
	ok, err := l.TryLock()
	if err != nil {
		return true // cannot tell (another user's file): assume it lives
	}
	if ok {
		_ = l.Unlock()
	}
	return !ok
}

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

// ServingPid returns the pid the serving process wrote under its lock, and
// whether that lock is held. A pid file beside a free lock is stale.
func ServingPid(dir string) (int, bool) {
	if !Held(dir) {
		return 0, false
	}
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
