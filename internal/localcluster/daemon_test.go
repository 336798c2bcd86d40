package localcluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/agentsandbox/go-sandboxtest/internal/localstate"
)

// TestDownIgnoresStalePid: a cluster killed with SIGKILL leaves serve.pid
// and ready; the pid may since name an unrelated process. With the lock
// free, Down signals no one, removes the stale state and keeps the rest.
func TestDownIgnoresStalePid(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	assert.NilError(t, localstate.Mark(dir))
	unrelated := exec.Command("sleep", "300")
	assert.NilError(t, unrelated.Start())
	exited := make(chan error, 1)
	go func() { exited <- unrelated.Wait() }()
	t.Cleanup(func() { _ = unrelated.Process.Kill() })
	write := func(name, content string) {
		assert.NilError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	write(localstate.PidFile, strconv.Itoa(unrelated.Process.Pid))
	write(localstate.ReadyFile, filepath.Join(dir, "kubeconfig"))
	write(localstate.LockFile, "")
	write("notes.txt", "not the cluster's")

	st := GetStatus(t.Context(), dir)
	assert.Check(t, is.Equal(st.Pid, 0), "a free lock means no cluster")
	assert.NilError(t, Down(UpOptions{Dir: dir}))
	select {
	case err := <-exited:
		t.Errorf("Down signalled an unrelated process: %v", err)
	default:
	}
	for _, name := range []string{localstate.PidFile, localstate.ReadyFile} {
		_, err := os.Stat(filepath.Join(dir, name))
		assert.Check(t, os.IsNotExist(err), "stale %s left", name)
	}
	_, err := os.Stat(filepath.Join(dir, "notes.txt"))
	assert.Check(t, err, "Down removed a file the cluster did not create")
}

// TestServeRefusesHeldLock: while another holds the directory's lock, a
// second serving process refuses to start and names the holder's pid.
func TestServeRefusesHeldLock(t *testing.T) {
	dir := t.TempDir()
	assert.NilError(t, localstate.Mark(dir))
	lock := localstate.NewLock(dir)
	ok, err := lock.TryLock()
	assert.Assert(t, ok, err)
	defer lock.Unlock()
	holder := strconv.Itoa(os.Getpid()) // the pid the holder wrote under its lock
	assert.NilError(t, os.WriteFile(filepath.Join(dir, localstate.PidFile), []byte(holder), 0o600))
	err = Serve(t.Context(), Options{Dir: dir, Log: t.Output()}, ServeOptions{})
	assert.Check(t, is.ErrorContains(err, "a local cluster already runs in "+dir+" (pid "+holder+")"))
	assert.Check(t, localstate.Held(dir))
}
