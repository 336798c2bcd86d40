package localserve

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/agentsandbox/go-sandboxtest/internal/localstate"
)

// fakeSetup writes a shell script standing in for sandboxtest-setup; it is
// called as: local serve --dir DIR --exit-with-stdin --remove-dir.
func fakeSetup(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sandboxtest-setup")
	assert.NilError(t, os.WriteFile(p, []byte("#!/bin/sh\ndir=$4\n"+body), 0o755))
	return p
}

// TestStartStopProtocol: ready once the ready file names a kubeconfig;
// Stop closes the child's stdin, and the child, which only waits for that,
// removes its directory and exits.
func TestStartStopProtocol(t *testing.T) {
	setup := fakeSetup(t, `echo "serving $dir"
echo $$ > "$dir/serve.pid"
echo "$dir/kubeconfig" > "$dir/ready"
cat > /dev/null
echo "stdin closed" >&2
rm -rf "$dir"
`)
	dir := filepath.Join(t.TempDir(), "state")
	assert.NilError(t, os.Mkdir(dir, 0o755))
	var log strings.Builder
	s, err := Start(t.Context(), Options{Setup: setup, Dir: dir, Log: &log})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(s.Kubeconfig, filepath.Join(dir, "kubeconfig")))
	assert.Check(t, s.Pid > 0)
	assert.NilError(t, s.Stop())
	s.out.wait()
	assert.Check(t, is.Contains(s.out.String(), "stdin closed"), "the child did not see its stdin close")
	assert.Check(t, is.Contains(log.String(), "serving "+dir))
	assert.Check(t, !strings.Contains(log.String(), "stdin closed"), "output after ready is the tests' business, not the log's")
	_, err = os.Stat(dir)
	assert.Check(t, os.IsNotExist(err), "%s left behind", dir)
	assert.NilError(t, s.Stop(), "Stop is idempotent")
}

// TestStartChildFails: the child's last lines are in the error.
func TestStartChildFails(t *testing.T) {
	setup := fakeSetup(t, `echo "building etcd"
echo "no space left on device" >&2
exit 3
`)
	_, err := Start(t.Context(), Options{Setup: setup, Dir: filepath.Join(t.TempDir(), "state")})
	assert.Check(t, is.ErrorContains(err, "exited (exit status 3) before it was ready"))
	assert.Check(t, is.ErrorContains(err, "no space left on device"))
}

// TestSweep removes a directory whose lock is free (its serving process
// was killed) and keeps one whose lock is held and one without a lock file.
func TestSweep(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	mk := func(lockFile bool) string {
		d, err := os.MkdirTemp("", DirPrefix)
		assert.NilError(t, err)
		// A stale pid file naming a live process must not keep it.
		assert.NilError(t, os.WriteFile(filepath.Join(d, "serve.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600))
		if lockFile {
			assert.NilError(t, os.WriteFile(filepath.Join(d, localstate.LockFile), nil, 0o600))
		}
		return d
	}
	dead := mk(true)
	live := mk(true)
	held := localstate.NewLock(live)
	ok, err := held.TryLock()
	assert.Assert(t, ok, err)
	defer held.Unlock()
	starting := mk(false)
	assert.Check(t, is.DeepEqual(Sweep(), []string{dead}))
	for _, d := range []string{live, starting} {
		_, err := os.Stat(d)
		assert.Check(t, err)
	}
	assert.Check(t, !localstate.Held(dead))
}
