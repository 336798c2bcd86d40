package localserve

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
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

// TestSweep removes a directory whose pid file names a dead process and
// keeps one whose process lives and one without a pid file.
func TestSweep(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	mk := func(pid string) string {
		d, err := os.MkdirTemp("", DirPrefix)
		assert.NilError(t, err)
		if pid != "" {
			assert.NilError(t, os.WriteFile(filepath.Join(d, "serve.pid"), []byte(pid), 0o644))
		}
		return d
	}
	dead := mk("999999999")
	live := mk(strconv.Itoa(os.Getpid()))
	starting := mk("")
	assert.Check(t, is.DeepEqual(Sweep(), []string{dead}))
	for _, d := range []string{live, starting} {
		_, err := os.Stat(d)
		assert.Check(t, err)
	}
}
