package sandboxtest

import "fmt"

// errorf prefixes every error sandboxtest returns, so a failure says where it came from.
func errorf(format string, args ...any) error {
	return fmt.Errorf("sandboxtest: "+format, args...)
}

// UnavailableError means no cluster could be reached; New skips on it
// unless CI or SANDBOXTEST_REQUIRE=1 asks for a failure.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("sandboxtest: no reachable cluster (%v); start one with: go run github.com/agentsandbox/go-sandboxtest/cmd/sandboxtest-setup@latest local up (then export the KUBECONFIG it prints), or: sandboxtest-setup kind create", e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }
