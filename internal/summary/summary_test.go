package summary

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func read(t *testing.T, path string) File {
	t.Helper()
	var sum File
	data, err := os.ReadFile(path)
	assert.NilError(t, err)
	assert.NilError(t, json.Unmarshal(data, &sum))
	return sum
}

func TestWriteMergesWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "summary.json")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 { // as 8 test binaries would, each with its tests (each writer opens the lock file anew, so they exclude each other)
		wg.Go(func() {
			errs <- Write(context.Background(), path, []Test{
				{Test: fmt.Sprintf("TestA%d", i), RunID: fmt.Sprint(i), Result: "pass", Started: time.Unix(int64(100+i), 0)},
				{Test: fmt.Sprintf("TestB%d", i), RunID: fmt.Sprint(i), Result: "fail", Started: time.Unix(int64(200+i), 0)},
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.Check(t, err)
	}
	sum := read(t, path)
	assert.Check(t, is.Equal(sum.Version, Version))
	assert.Assert(t, is.Len(sum.Tests, 16))
	assert.Check(t, is.Equal(sum.Tests[0].Test, "TestA0"), "sorted by start")
	assert.Check(t, is.Equal(sum.Tests[15].Test, "TestB7"), "sorted by start")
	tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "summary.json.tmp.*"))
	assert.Check(t, is.Len(tmps, 0), "temporary files left: %v", tmps)

	// A file from an earlier run is added to.
	assert.NilError(t, Write(context.Background(), path, []Test{{Test: "TestC", Started: time.Unix(300, 0)}}))
	sum = read(t, path)
	assert.Assert(t, is.Len(sum.Tests, 17))
	assert.Check(t, is.Equal(sum.Tests[16].Test, "TestC"))
}

// TestWriteWaitsForTheLock: a writer waits while another holds the lock,
// and gives up with a message naming the lock when its context ends.
func TestWriteWaitsForTheLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "summary.json")
	other := flock.New(path + ".lock") // another test binary
	ok, err := other.TryLock()
	assert.Assert(t, ok && err == nil, "%v", err)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = Write(ctx, path, []Test{{Test: "TestLate"}})
	assert.Check(t, is.ErrorContains(err, "held the lock "+path+".lock for too long"))
	_, serr := os.Stat(path)
	assert.Check(t, os.IsNotExist(serr), "written under another's lock")

	done := make(chan error)
	go func() { done <- Write(context.Background(), path, []Test{{Test: "TestWaited"}}) }()
	assert.NilError(t, other.Unlock())
	assert.NilError(t, <-done)
	assert.Check(t, is.Equal(read(t, path).Tests[0].Test, "TestWaited"))
}

// TestLeftLockFileDoesNotBlock: a lock file left by a writer that died is
// not a lock (the system released it with the process).
func TestLeftLockFileDoesNotBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "summary.json")
	assert.NilError(t, os.WriteFile(path+".lock", []byte("12345\n"), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	assert.Check(t, Write(ctx, path, []Test{{Test: "TestC"}}))
}

// TestWriteLeavesOtherFilesAlone: a file that is not a summary is not touched.
func TestWriteLeavesOtherFilesAlone(t *testing.T) {
	other := filepath.Join(t.TempDir(), "notes.json")
	assert.NilError(t, os.WriteFile(other, []byte("my notes"), 0o644))
	err := Write(context.Background(), other, []Test{{Test: "TestD"}})
	assert.Check(t, is.ErrorContains(err, "sandboxtest: summary "+other+": the file exists and is not a version 1 sandboxtest summary"))
	data, _ := os.ReadFile(other)
	assert.Check(t, is.Equal(string(data), "my notes"))

	assert.NilError(t, os.WriteFile(other, []byte(`{"version":2,"tests":[]}`), 0o644))
	assert.Check(t, is.ErrorContains(Write(context.Background(), other, nil), "is not a version 1"))
}

// TestRunAddsUpSandboxes: a test's totals are its sandboxes', as they are
// when it is filed.
func TestRunAddsUpSandboxes(t *testing.T) {
	a, b := NewEntry("tmpl", "default"), NewEntry("tmpl", "ns2")
	a.Update(func(s *Sandbox) { s.Commands, s.CommandTimeMS, s.Start = 2, 1.5, "warm" })
	b.Update(func(s *Sandbox) { s.Commands, s.CommandTimeMS, s.Error = 1, 0.25, "boom" })
	var nilEntry *Entry
	nilEntry.Update(func(s *Sandbox) { s.Commands = 99 }) // ignored

	var r Run
	r.Add(Test{Test: "TestX", Result: "pass"}, []*Entry{a, b})
	r.Add(Test{Test: "TestNone", Result: "skip"}, nil)
	a.Update(func(s *Sandbox) { s.Commands = 10 }) // after filing: not counted

	tests := r.Tests()
	assert.Assert(t, is.Len(tests, 2))
	x := tests[0]
	assert.Check(t, is.Equal(x.Commands, 3))
	assert.Check(t, is.Equal(x.CommandTimeMS, 1.75))
	assert.Assert(t, is.Len(x.Sandboxes, 2))
	assert.Check(t, is.Equal(x.Sandboxes[0].Namespace, "default"))
	assert.Check(t, is.Equal(x.Sandboxes[0].Commands, 2))
	assert.Check(t, is.Equal(x.Sandboxes[1].Error, "boom"))
	data, err := json.Marshal(tests[1])
	assert.NilError(t, err)
	assert.Check(t, is.Contains(string(data), `"sandboxes":[]`), "an empty list, not null")
}

func TestPackagePath(t *testing.T) {
	root := t.TempDir()
	assert.NilError(t, os.WriteFile(filepath.Join(root, "go.mod"), []byte("module example.com/m\n\ngo 1.24\n"), 0o644))
	sub := filepath.Join(root, "a", "b")
	assert.NilError(t, os.MkdirAll(sub, 0o755))
	assert.Check(t, is.Equal(PackagePath(root), "example.com/m"))
	assert.Check(t, is.Equal(PackagePath(sub), "example.com/m/a/b"))

	assert.NilError(t, os.WriteFile(filepath.Join(root, "a", "go.mod"), []byte("not a go.mod"), 0o644))
	assert.Check(t, is.Equal(PackagePath(sub), ""), "a go.mod without a module line")
}
