package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/runtime"
)

// errorf prefixes every error sandboxtest returns, so a failure says where it came from.
func errorf(format string, args ...any) error {
	return fmt.Errorf("sandboxtest: "+format, args...)
}

// Errors to match with errors.Is. Timeouts (New's ready timeout, a call's
// timeout) match context.DeadlineExceeded.
var (
	// ErrTemplateNotFound: New was given a template that does not exist in
	// the namespace (the message lists those that do).
	ErrTemplateNotFound = kube.ErrTemplateNotFound
	// ErrRouterNotFound: the sandbox-router Service was not found where the
	// tunnel looked for it.
	ErrRouterNotFound = kube.ErrRouterNotFound
	// ErrNotExist is in the chain of errors about a missing file or
	// directory. It is fs.ErrNotExist, so errors.Is(err, fs.ErrNotExist)
	// holds too.
	ErrNotExist = fs.ErrNotExist
	// ErrDeleted: a call to a sandbox after Delete.
	ErrDeleted = errors.New("sandbox deleted")
)

// UnavailableError means no cluster could be reached; New skips on it
// unless CI or SANDBOXTEST_REQUIRE=1 asks for a failure.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("sandboxtest: no reachable cluster (%v); start one with: go run github.com/agentsandbox/go-sandboxtest/cmd/sandboxtest-setup@latest local up (then export the KUBECONFIG it prints), or: sandboxtest-setup kind create", e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// TerminalError is a sandbox that cannot become Ready, whatever the wait:
// New returns it as soon as the claim (or its pod) says so. Reason is the
// claim's Ready=False reason (WarmPoolNotFound, TemplateNotFound,
// InvalidMetadata, EnvVarsInjectionRejected, VolumeClaimTemplatesError,
// ClaimExpired, SandboxExpired), ClaimDeleted, or the pod's (Unschedulable,
// PodFailed, PodSucceeded, ErrImagePull, ImagePullBackOff,
// InvalidImageName, CreateContainerConfigError).
type TerminalError struct {
	Reason    string
	Message   string // the condition's or the pod's message
	Namespace string
	Claim     string
	Template  string
	msg       string
}

func (e *TerminalError) Error() string { return e.msg }

// HTTPError is a call to the sandbox answered with a non-2xx status, by the
// router (400 bad headers, 502 sandbox unreachable, ...) or by the
// sandbox's runtime through it (a 404 of a missing file is ErrNotExist
// instead).
type HTTPError struct {
	StatusCode int
	Body       string // the start of the response body
	RequestID  string // X-Request-ID of the call, for the router's logs
	err        error
}

func (e *HTTPError) Error() string { return e.err.Error() }
func (e *HTTPError) Unwrap() error { return e.err }

// callError wraps err, a call's error from the runtime client, so that an
// HTTP status is an *HTTPError.
func callError(err error) error {
	var h *runtime.HTTPError
	if errors.As(err, &h) {
		return &HTTPError{StatusCode: h.StatusCode, Body: h.Body, RequestID: h.RequestID, err: err}
	}
	return err
}

// deadlineError is a timeout worded for people (the phase, the limit and
// who set it, the last state seen) that still matches
// context.DeadlineExceeded.
type deadlineError struct{ msg string }

func (e *deadlineError) Error() string { return e.msg }
func (e *deadlineError) Unwrap() error { return context.DeadlineExceeded }

// callTimeout is the cause of a call's context when its timeout runs out.
type callTimeout struct {
	d      time.Duration
	source string
}

func (e *callTimeout) Error() string {
	return fmt.Sprintf("the call timeout of %s ran out (%s)", e.d, e.source)
}
func (e *callTimeout) Unwrap() error { return context.DeadlineExceeded }
