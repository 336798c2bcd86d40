package sandboxtest

import (
	"fmt"
	"os"
	"strings"
)

// Quiet reports whether routine progress lines are off: -sandboxtest.quiet
// or SANDBOXTEST_QUIET=1. Routine lines say that something went as
// expected (connected, ready, deleted); warnings, "still waiting" lines,
// errors and the failure report are never silenced.
func Quiet() bool {
	if *flagQuiet {
		return true
	}
	return envSwitch("SANDBOXTEST_QUIET", false)
}

// progressf logs a routine line through t, unless Quiet.
func progressf(t TB, format string, args ...any) {
	t.Helper()
	if !Quiet() {
		t.Logf(format, args...)
	}
}

// stderrProgressf prints a routine line of Main (no test to log to), unless Quiet.
func stderrProgressf(format string, args ...any) {
	if !Quiet() {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// tunnelLog is the shared tunnel's log: standard error, as connect's
// default, without its routine "ready" line when Quiet. The tunnel outlives
// single tests, so it cannot log through one.
func tunnelLog(format string, args ...any) {
	if Quiet() && strings.Contains(format, " ready in ") && !strings.Contains(format, "re-established") {
		return
	}
	fmt.Fprintf(os.Stderr, "sandboxtest: "+strings.TrimSuffix(format, "\n")+"\n", args...)
}
