// Package summary is the run summary file: its JSON format, the summary
// of a test binary's tests as they finish, and adding them to a file that
// several test binaries may write at once.
//
// Each writer takes an exclusive lock on path+".lock" (flock(2), or
// LockFileEx on Windows: the system releases it when a writer dies),
// reads the tests already there, appends its own, writes
// path+".tmp.<pid>" and renames it into place. A file from an earlier run
// is added to, not replaced. A file that is not a summary is not touched.
package summary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/mod/modfile"
)

// Version is the "version" of the format.
const Version = 1

// File is the content of a summary file.
type File struct {
	Version int    `json:"version"`
	Tests   []Test `json:"tests"`
}

// Test is one test that used sandboxes.
type Test struct {
	Test          string    `json:"test"`
	Package       string    `json:"package,omitempty"` // import path, from go.mod and the working directory
	RunID         string    `json:"run_id"`
	Result        string    `json:"result"` // pass, fail or skip
	Started       time.Time `json:"started"`
	Sandboxes     []Sandbox `json:"sandboxes"`
	Commands      int       `json:"commands"`        // over all its sandboxes
	CommandTimeMS float64   `json:"command_time_ms"` // their total duration
}

// Sandbox is one sandbox of a test.
type Sandbox struct {
	Template      string  `json:"template"`
	Namespace     string  `json:"namespace"`
	Pool          string  `json:"pool,omitempty"`
	Claim         string  `json:"claim,omitempty"`
	Mode          string  `json:"mode,omitempty"`  // tunnel, gateway or direct
	Start         string  `json:"start,omitempty"` // warm or cold; "" when never ready
	Warm          bool    `json:"warm"`
	TimeToReadyMS float64 `json:"time_to_ready_ms,omitempty"` // from New's call to Ready
	Commands      int     `json:"commands"`
	CommandTimeMS float64 `json:"command_time_ms"`
	Error         string  `json:"error,omitempty"` // why New failed
}

// Entry is a sandbox's summary being filled in while its test runs; it
// is safe for concurrent use, and a nil Entry ignores updates.
type Entry struct {
	mu sync.Mutex
	s  Sandbox
}

// NewEntry starts a sandbox's summary.
func NewEntry(template, namespace string) *Entry {
	return &Entry{s: Sandbox{Template: template, Namespace: namespace}}
}

// Update changes the summary.
func (e *Entry) Update(f func(*Sandbox)) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	f(&e.s)
}

// Get returns the summary as it is now.
func (e *Entry) Get() Sandbox {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.s
}

// Run collects the tests of one test binary as they finish; the zero
// value is ready, and it is safe for concurrent use.
type Run struct {
	mu    sync.Mutex
	tests []Test
}

// Add files a finished test with its sandboxes as they are now, adding
// up their commands.
func (r *Run) Add(t Test, sandboxes []*Entry) {
	t.Sandboxes = []Sandbox{}
	for _, e := range sandboxes {
		s := e.Get()
		t.Sandboxes = append(t.Sandboxes, s)
		t.Commands += s.Commands
		t.CommandTimeMS += s.CommandTimeMS
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tests = append(r.tests, t)
}

// Tests returns the tests filed so far.
func (r *Run) Tests() []Test {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Test(nil), r.tests...)
}

// PackagePath is the import path of the package in dir, from the go.mod
// above it, or "" when there is none.
func PackagePath(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			mod := modfile.ModulePath(data)
			rel, err := filepath.Rel(d, dir)
			if mod == "" || err != nil {
				return ""
			}
			if rel == "." {
				return mod
			}
			return mod + "/" + filepath.ToSlash(rel)
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// Write adds tests to the summary file at path, creating it and its
// directory if needed. It waits for other writers' lock until ctx ends.
func Write(ctx context.Context, path string, tests []Test) error {
	if err := write(ctx, path, tests); err != nil {
		return fmt.Errorf("sandboxtest: summary %s: %w", path, err)
	}
	return nil
}

func write(ctx context.Context, path string, tests []Test) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	lock := flock.New(path + ".lock")
	defer lock.Close()
	if ok, err := lock.TryLockContext(ctx, 20*time.Millisecond); !ok {
		if ctx.Err() != nil {
			return fmt.Errorf("another test binary held the lock %s for too long (%w); is one stuck?", lock.Path(), ctx.Err())
		}
		return fmt.Errorf("locking %s: %w", lock.Path(), err)
	}
	sum := File{Version: Version}
	switch data, err := os.ReadFile(path); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(data) > 0:
		if err := json.Unmarshal(data, &sum); err != nil || sum.Version != Version {
			return fmt.Errorf("the file exists and is not a version %d sandboxtest summary (%v); remove it or choose another SANDBOXTEST_SUMMARY", Version, err)
		}
	}
	sum.Tests = append(sum.Tests, tests...)
	sort.SliceStable(sum.Tests, func(i, j int) bool { return sum.Tests[i].Started.Before(sum.Tests[j].Started) })
	data, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp." + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
