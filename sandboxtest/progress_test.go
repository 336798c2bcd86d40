package sandboxtest

import (
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/agentsandbox/go-sandboxtest/internal/report"
)

// TestQuiet: -sandboxtest.quiet (or SANDBOXTEST_QUIET=1) silences the
// routine lines of a passing test, and never the failure report.
func TestQuiet(t *testing.T) {
	t.Setenv("SANDBOXTEST_QUIET", "")
	loud := &recorder{name: "TestLoud"}
	loud.run(func() { New(loud, "python-sandbox-template").RunOK("true") })
	finish(loud)
	out := loud.output()
	assert.Check(t, is.Contains(out, "ready in"))
	assert.Check(t, is.Contains(out, "(cold, pool python-sandbox-template"))
	assert.Check(t, is.Contains(out, "deleted claim"))

	t.Setenv("SANDBOXTEST_QUIET", "1")
	quiet := &recorder{name: "TestQuiet"}
	quiet.run(func() { New(quiet, "python-sandbox-template").RunOK("true") })
	finish(quiet)
	assert.Check(t, !quiet.failed)
	assert.Check(t, is.Len(quiet.logs, 0), quiet.output())

	failing := &recorder{name: "TestQuietFailure"}
	failing.run(func() {
		New(failing, "python-sandbox-template").RunOK("true")
		failing.Errorf("deliberate")
	})
	finish(failing)
	assert.Assert(t, is.Len(failing.logs, 1), failing.output())
	assert.Check(t, strings.HasPrefix(failing.logs[0], report.HeaderPrefix))
}

func TestQuietFromFlagOrVariable(t *testing.T) {
	t.Setenv("SANDBOXTEST_QUIET", "")
	assert.Check(t, !Quiet())
	*flagQuiet = true
	assert.Check(t, Quiet())
	*flagQuiet = false
	for _, v := range []string{"1", "true", "TRUE"} {
		t.Setenv("SANDBOXTEST_QUIET", v)
		assert.Check(t, Quiet(), v)
	}
	t.Setenv("SANDBOXTEST_QUIET", "0")
	assert.Check(t, !Quiet())
}
