package templates_test

// These examples run under go test against the cluster that TestMain's
// sandboxtest.Main prepared (the local cluster when there is no kubeconfig).
// An Example gets no *testing.T, so each makes a fixtures.Standalone, a
// stand-in that prints failures to stdout (where the Output check sees
// them) and runs cleanups on Close; in a test, use the test's t instead.

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/agentsandbox/go-sandboxtest/fixtures"
	"github.com/agentsandbox/go-sandboxtest/sandboxtest"
	"github.com/agentsandbox/go-sandboxtest/tracing"
)

// TestMain runs the Examples as a suite runs its tests, through
// sandboxtest.Main; this repository's own runs always use a local cluster
// (whatever kubeconfig or CI variable the machine has) unless
// SANDBOXTEST_LOCAL says otherwise.
func TestMain(m *testing.M) {
	if os.Getenv("SANDBOXTEST_LOCAL") == "" {
		os.Setenv("SANDBOXTEST_LOCAL", "1")
	}
	sandboxtest.Main(m)
}

// newExampleT is what an Example has instead of the test's t.
func newExampleT(name string) *fixtures.Standalone {
	return fixtures.NewStandalone(name, nil, os.Stdout)
}

// A sandbox for one test: run a command and check what it did.
func ExampleNew() {
	t := newExampleT("ExampleNew") // in a test: func TestX(t *testing.T)
	defer t.Close()                // in a test: done by go test (t.Cleanup deletes the sandbox)

	sb := sandboxtest.New(t, "python-sandbox-template")
	res := sb.Run("python3 -c 'print(6 * 7)'")
	res.Assert(t, sandboxtest.Expected{ExitCode: 0, Out: "42\n", Err: sandboxtest.None})
	fmt.Print(res.Stdout)
	// Output: 42
}

// A non-zero exit is a Result to check, not an error; Assert prints the
// command, its exit code and output tails when an expectation is unmet.
func ExampleResult_Assert() {
	t := newExampleT("ExampleResult_Assert")
	defer t.Close()

	sb := sandboxtest.New(t, "python-sandbox-template")
	res := sb.Run("sh -c 'echo out; echo err >&2; exit 3'")
	res.Assert(t, sandboxtest.Expected{ExitCode: 3, Out: "out\n", Err: "err\n"})
	sb.Run("sh -c 'echo building; exit 0'").Assert(t, sandboxtest.Expected{OutContains: "build"})
	fmt.Println("exit code:", res.ExitCode)
	// Output: exit code: 3
}

// Files go in and out through the runtime's file API, relative to the
// sandbox's working directory; parent directories are created.
func ExampleSandbox_WriteFile() {
	t := newExampleT("ExampleSandbox_WriteFile")
	defer t.Close()

	sb := sandboxtest.New(t, "python-sandbox-template")
	sb.WriteFile("src/main.py", []byte("print('hello from a file')\n"))
	sb.RunOK("python3 src/main.py").Assert(t, sandboxtest.Expected{Out: "hello from a file\n"})

	sb.RunOK("sh -c 'mkdir -p out && echo done > out/result.txt'")
	sb.AssertFile(t, "out/result.txt", "done\n")
	sb.AssertNoFile(t, "out/missing.txt")
	for _, e := range sb.ListDir("src") {
		fmt.Println(e.Name, e.Size)
	}
	fmt.Printf("%q\n", sb.ReadFile("out/result.txt"))
	// Output:
	// main.py 27
	// "done\n"
}

// Golden files live under testdata/; -sandboxtest.update (or
// SANDBOXTEST_UPDATE=1) rewrites them with what the test got.
func ExampleAssertGolden() {
	t := newExampleT("ExampleAssertGolden")
	defer t.Close()

	sb := sandboxtest.New(t, "python-sandbox-template")
	res := sb.RunOK("printf 'golden\\n'")
	sandboxtest.AssertGolden(t, res.Stdout, "golden.golden") // testdata/golden.golden
	fmt.Println("matches testdata/golden.golden")
	// Output: matches testdata/golden.golden
}

// Three tests share one sandbox: fixtures.Shared leases it for a test and
// takes it back at its end (deleting it instead if the test failed); the
// reset empties its working directory between tests.
func Example_shared() {
	suite := newExampleT("Example_shared")
	defer suite.Close()
	defer fixtures.CloseShared() // at the end of the suite; else idle sandboxes live until their claim's shutdownTime

	for _, name := range []string{"TestFirst", "TestSecond", "TestThird"} {
		suite.Run(name, func(t *fixtures.Standalone) { // in a suite: func TestFirst(t *testing.T)
			sb := fixtures.Shared(t, "python-sandbox-template", fixtures.WithReset(fixtures.ClearWorkdir))
			before := len(sb.ListDir("."))
			sb.WriteFile(name+".txt", []byte(name))
			fmt.Printf("%s: %d files before, %d after\n", name, before, len(sb.ListDir(".")))
		})
	}
	for _, p := range fixtures.SharedPoolStats() {
		fmt.Printf("%s: %d tests, %d sandbox\n", p.Template, p.Leases, p.Created)
	}
	// Output:
	// TestFirst: 0 files before, 1 after
	// TestSecond: 0 files before, 1 after
	// TestThird: 0 files before, 1 after
	// python-sandbox-template: 3 tests, 1 sandbox
}

// The same test over several templates, one subtest each, named after the
// template: go test -run 'TestX/python-env-template' picks one, and
// SANDBOXTEST_TEMPLATES=a,b replaces the list (a CI matrix).
func Example_forEachTemplate() {
	t := newExampleT("Example_forEachTemplate")
	defer t.Close()

	templates := []string{"python-sandbox-template", "python-env-template"}
	fixtures.ForEachTemplate(t, templates, func(t *fixtures.Standalone, sb *sandboxtest.Sandbox) {
		// in a test: func(t *testing.T, sb *sandboxtest.Sandbox)
		sb.RunOK("echo hello").Assert(t, sandboxtest.Expected{Out: "hello\n"})
		sb.WriteFile("data.txt", []byte(sb.Template()))
		sb.AssertFile(t, "data.txt", sb.Template())
	})
	fmt.Println("every template passed:", !t.Failed())
	// Output: every template passed: true
}

// The conformance battery tells an image author whether a template works as
// a sandbox; `sandboxtest-setup validate --template NAME` runs the same
// checks from the command line. The summary table goes to the test log.
func Example_validateTemplate() {
	t := newExampleT("Example_validateTemplate")
	defer t.Close()

	rep := fixtures.ValidateTemplate(t, "python-sandbox-template")
	var names []string
	for _, c := range rep.Checks {
		names = append(names, c.Name)
	}
	fmt.Println("passes:", rep.OK())
	fmt.Println(strings.Join(names, " "))
	// Output:
	// passes: true
	// template ready router echo exit-codes streams files binary large-file large-output workdir env readiness-probe non-root network-policy
}

// Tracing: every test that uses a sandbox gets a span tree. Main sets it up
// from the OTEL_* variables when SANDBOXTEST_TRACING=1 or -sandboxtest.trace
// is given; here the spans go to memory so the example can show them.
func Example_tracing() {
	spans := tracetest.NewInMemoryExporter()
	shutdown, err := tracing.Setup(context.Background(), tracing.WithExporter(spans), tracing.WithSyncExport())
	if err != nil {
		fmt.Println(err)
		return
	}
	t := newExampleT("Example_tracing")
	sb := sandboxtest.New(t, "python-sandbox-template")
	sb.WriteFile("in.txt", []byte("x"))
	sb.RunOK("cat in.txt")
	t.Close() // deletes the sandbox: the last spans end
	defer shutdown(context.Background())

	seen := map[string]bool{}
	var names []string
	for _, s := range spans.GetSpans() {
		if !seen[s.Name] {
			seen[s.Name] = true
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	fmt.Println(strings.Join(names, "\n"))
	// Output:
	// sandbox-client.connect
	// sandbox-client.create_claim
	// sandbox-client.delete_claim
	// sandbox-client.lifecycle
	// sandbox-client.run
	// sandbox-client.wait_for_sandbox_ready
	// sandbox-client.write
	// sandboxtest.test
}
