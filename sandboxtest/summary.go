package sandboxtest

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/summary"
)

// The run summary: with SANDBOXTEST_SUMMARY=path, Main adds this test
// binary's tests to the JSON file at path when they are over (the format
// and the merge with other test binaries are internal/summary's).

// runSummary collects the tests of this binary that used sandboxes.
var runSummary summary.Run

// addSandbox starts a sandbox's line in its test's summary.
func (r *testRecord) addSandbox(template, namespace string) *summary.Entry {
	e := summary.NewEntry(template, namespace)
	r.mu.Lock()
	r.sandboxes = append(r.sandboxes, e)
	r.mu.Unlock()
	return e
}

// addSummary files a finished test. A detached sandbox (fixtures.Shared)
// counts toward the test that provisioned it, with the commands run until then.
func addSummary(r *testRecord, result string) {
	r.mu.Lock()
	sbs := append([]*summary.Entry(nil), r.sandboxes...)
	r.mu.Unlock()
	runSummary.Add(summary.Test{Test: r.name, Package: packagePath(), RunID: RunID(), Result: result, Started: r.started.UTC()}, sbs)
}

// packagePath is the import path of the package under test: go test runs
// a test binary in its package's directory.
var packagePath = sync.OnceValue(func() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	return summary.PackagePath(dir)
})

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// summaryLockWait bounds the wait for other test binaries writing the summary.
const summaryLockWait = 30 * time.Second

// writeRunSummary writes this process's tests when SANDBOXTEST_SUMMARY is set.
func writeRunSummary() error {
	path := os.Getenv("SANDBOXTEST_SUMMARY")
	if path == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), summaryLockWait)
	defer cancel()
	tests := runSummary.Tests()
	if err := summary.Write(ctx, path, tests); err != nil {
		return err
	}
	stderrProgressf("sandboxtest: summary of %d tests added to %s", len(tests), path)
	return nil
}
