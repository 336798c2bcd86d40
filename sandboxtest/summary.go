package sandboxtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"golang.org/x/mod/modfile"
)

// The run summary: with SANDBOXTEST_SUMMARY=path, Main writes, when the
// tests are over, a JSON file saying per test which sandboxes it used, how
// long they took to be ready, warm or cold, and how many commands ran in
// them for how long.
//
// Several test binaries (go test ./... runs one per package, in parallel)
// may name the same path: each takes the lock file path+".lock" (created
// exclusively; one older than a minute is taken as abandoned), reads the
// tests already there, appends its own, writes path+".tmp.<pid>" and renames
// it into place. A file from an earlier run is added to, not replaced:
// delete it to start afresh. A file that is not a summary is not touched.

// SummaryVersion is the "version" of the summary format.
const SummaryVersion = 1

// Summary is the content of the SANDBOXTEST_SUMMARY file.
type Summary struct {
	Version int           `json:"version"`
	Tests   []SummaryTest `json:"tests"`
}

// SummaryTest is one test that used sandboxes.
type SummaryTest struct {
	Test          string           `json:"test"`
	Package       string           `json:"package,omitempty"` // import path, from go.mod and the working directory
	RunID         string           `json:"run_id"`
	Result        string           `json:"result"` // pass, fail or skip
	Started       time.Time        `json:"started"`
	Sandboxes     []SandboxSummary `json:"sandboxes"`
	Commands      int              `json:"commands"`        // over all its sandboxes
	CommandTimeMS float64          `json:"command_time_ms"` // their total duration
}

// SandboxSummary is one sandbox of a test.
type SandboxSummary struct {
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

// sandboxSummary is a SandboxSummary being filled in; guarded by summaries.mu.
type sandboxSummary struct{ SandboxSummary }

var summaries = struct {
	mu    sync.Mutex
	tests []SummaryTest
}{}

// addSandbox adds a sandbox to the test's summary.
func (r *testRecord) addSandbox(template, namespace string) *sandboxSummary {
	s := &sandboxSummary{SandboxSummary{Template: template, Namespace: namespace}}
	r.mu.Lock()
	r.sandboxes = append(r.sandboxes, s)
	r.mu.Unlock()
	return s
}

// update changes a sandbox's summary under the summaries' lock.
func (s *sandboxSummary) update(f func(*SandboxSummary)) {
	if s == nil {
		return
	}
	summaries.mu.Lock()
	defer summaries.mu.Unlock()
	f(&s.SandboxSummary)
}

// addSummary files a finished test. A detached sandbox (fixtures.Shared)
// counts toward the test that provisioned it, with the commands run until then.
func addSummary(r *testRecord, result string) {
	r.mu.Lock()
	sbs := append([]*sandboxSummary(nil), r.sandboxes...)
	r.mu.Unlock()
	summaries.mu.Lock()
	defer summaries.mu.Unlock()
	t := SummaryTest{Test: r.name, Package: packagePath(), RunID: RunID(), Result: result, Started: r.started.UTC(), Sandboxes: []SandboxSummary{}}
	for _, sb := range sbs {
		t.Sandboxes = append(t.Sandboxes, sb.SandboxSummary)
		t.Commands += sb.Commands
		t.CommandTimeMS += sb.CommandTimeMS
	}
	summaries.tests = append(summaries.tests, t)
}

// summaryTests returns the tests filed so far.
func summaryTests() []SummaryTest {
	summaries.mu.Lock()
	defer summaries.mu.Unlock()
	return append([]SummaryTest(nil), summaries.tests...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

var (
	pkgOnce sync.Once
	pkgPath string
)

// packagePath is the import path of the package under test: go test runs
// a test binary in its package's directory.
func packagePath() string {
	pkgOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			return
		}
		for d := dir; ; d = filepath.Dir(d) {
			if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
				mod := modfile.ModulePath(data)
				rel, err := filepath.Rel(d, dir)
				if mod == "" || err != nil {
					return
				}
				pkgPath = mod
				if rel != "." {
					pkgPath += "/" + filepath.ToSlash(rel)
				}
				return
			}
			if filepath.Dir(d) == d {
				return
			}
		}
	})
	return pkgPath
}

// Lock timing of WriteSummary.
const (
	summaryLockWait  = 30 * time.Second
	summaryLockStale = time.Minute
)

// WriteSummary adds tests to the summary at path, merging safely with
// other processes writing the same path (see the comment at the top of
// summary.go).
func WriteSummary(path string, tests []SummaryTest) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("sandboxtest: summary %s: %w", path, err)
		}
	}
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return fmt.Errorf("sandboxtest: summary %s: %w", path, err)
	}
	defer unlock()
	sum := Summary{Version: SummaryVersion}
	switch data, err := os.ReadFile(path); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("sandboxtest: summary %s: %w", path, err)
	case len(data) > 0:
		if err := json.Unmarshal(data, &sum); err != nil || sum.Version != SummaryVersion {
			return fmt.Errorf("sandboxtest: summary %s exists and is not a version %d sandboxtest summary (%v); remove it or choose another SANDBOXTEST_SUMMARY", path, SummaryVersion, err)
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
		return fmt.Errorf("sandboxtest: summary %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("sandboxtest: summary %s: %w", path, err)
	}
	return nil
}

// lockFile creates path exclusively, waiting for another holder to remove
// it; a lock file older than summaryLockStale is taken as abandoned.
func lockFile(path string) (unlock func(), err error) {
	deadline := time.Now().Add(summaryLockWait)
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		if st, serr := os.Stat(path); serr == nil && time.Since(st.ModTime()) > summaryLockStale {
			os.Remove(path)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("lock %s held for more than %s (remove it if no test runs)", path, summaryLockWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeRunSummary writes this process's tests when SANDBOXTEST_SUMMARY is set.
func writeRunSummary() error {
	path := os.Getenv("SANDBOXTEST_SUMMARY")
	if path == "" {
		return nil
	}
	tests := summaryTests()
	if err := WriteSummary(path, tests); err != nil {
		return err
	}
	stderrProgressf("sandboxtest: summary of %d tests added to %s", len(tests), path)
	return nil
}
