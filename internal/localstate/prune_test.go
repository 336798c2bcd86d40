package localstate

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// TestPruneBuilds: builds unused for UnusedBuildAge go, with their
// unfinished builds and scratch modules; recent ones, locked ones and
// folders the builders did not make stay.
func TestPruneBuilds(t *testing.T) {
	cache := t.TempDir()
	bin := filepath.Join(cache, "bin")
	old := time.Now().Add(-UnusedBuildAge - time.Hour)
	build := func(key string, used time.Time, lock bool) {
		t.Helper()
		assert.NilError(t, os.MkdirAll(filepath.Join(bin, key), 0o755))
		assert.NilError(t, os.WriteFile(filepath.Join(bin, key, "prog"), bytes.Repeat([]byte("x"), 3<<20), 0o755))
		assert.NilError(t, os.Link(filepath.Join(bin, key, "prog"), filepath.Join(bin, key, "prog2")))
		assert.NilError(t, os.MkdirAll(filepath.Join(cache, "src", key), 0o755))
		if lock {
			assert.NilError(t, os.WriteFile(filepath.Join(bin, key+".lock"), nil, 0o600))
		}
		assert.NilError(t, os.Chtimes(filepath.Join(bin, key), used, used))
	}
	build("kubernetes-v1.36.3-b5", old, true)              // unused: goes
	build("sandboxtest-setup-src-0123456789ab", old, true) // unused: goes
	assert.NilError(t, os.MkdirAll(filepath.Join(bin, "kubernetes-v1.36.3-b5.tmp"), 0o755))
	build("kubernetes-v1.36.3-b6", time.Now(), true) // in use
	build("agent-sandbox-v0.5.6-b3", old, true)      // its lock is held below
	build("etcd-v3.6.8-b2", old, false)              // no lock: not a builder's
	build("notes", old, true)                        // not a builder's name
	MarkBuildUsed(filepath.Join(bin, "kubernetes-v1.36.3-b6"))

	held := flock.New(filepath.Join(bin, "agent-sandbox-v0.5.6-b3.lock"))
	ok, err := held.TryLock()
	assert.NilError(t, err)
	assert.Assert(t, ok)
	defer held.Unlock()

	var log bytes.Buffer
	PruneBuilds(cache, &log)

	for _, gone := range []string{"bin/kubernetes-v1.36.3-b5", "bin/kubernetes-v1.36.3-b5.tmp", "src/kubernetes-v1.36.3-b5",
		"bin/sandboxtest-setup-src-0123456789ab", "src/sandboxtest-setup-src-0123456789ab"} {
		_, err := os.Stat(filepath.Join(cache, gone))
		assert.Check(t, os.IsNotExist(err), "%s should be removed: %v", gone, err)
	}
	for _, kept := range []string{"bin/kubernetes-v1.36.3-b6/prog", "src/kubernetes-v1.36.3-b6",
		"bin/agent-sandbox-v0.5.6-b3/prog", "bin/etcd-v3.6.8-b2/prog", "bin/notes/prog",
		"bin/kubernetes-v1.36.3-b5.lock"} {
		_, err := os.Stat(filepath.Join(cache, kept))
		assert.Check(t, err, "%s should be kept", kept)
	}
	// Hard links count once: 3 MB each.
	assert.Check(t, is.Contains(log.String(), "removed kubernetes-v1.36.3-b5 from the cache (3 MB, unused for 30 days)"))
	assert.Check(t, is.Contains(log.String(), "removed sandboxtest-setup-src-0123456789ab from the cache (3 MB"))
}

// TestPruneBuildsWithoutCache: a cache directory without bin/ is no error.
func TestPruneBuildsWithoutCache(t *testing.T) {
	var log bytes.Buffer
	PruneBuilds(filepath.Join(t.TempDir(), "absent"), &log)
	assert.Equal(t, log.String(), "")
}
