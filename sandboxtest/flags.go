package sandboxtest

import "flag"

// Flags live under the sandboxtest. prefix so they never clash with a
// suite's own -update or -keep.
var (
	flagUpdate = flag.Bool("sandboxtest.update", false, "rewrite golden files under testdata/ with the actual output")
	flagKeep   = flag.String("sandboxtest.keep", "", "keep sandboxes after their test: never, onfailure or always (default $SANDBOXTEST_KEEP, else never)")
	flagQuiet  = flag.Bool("sandboxtest.quiet", false, "no routine progress lines (connected, ready, deleted); failures, warnings and failure reports still show (or SANDBOXTEST_QUIET=1)")
	flagTrace  = flag.Bool("sandboxtest.trace", false, "export OpenTelemetry spans per the OTEL_* variables (or SANDBOXTEST_TRACING=1); needs sandboxtest.Main")
)

func keepFlagOrEnv() Keep {
	if *flagKeep != "" {
		return Keep(*flagKeep)
	}
	return Keep(envOr("SANDBOXTEST_KEEP", string(KeepNever)))
}

func updateGolden() bool {
	return *flagUpdate || envSwitch("SANDBOXTEST_UPDATE", false)
}
