package runtime

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

var (
	// ErrNotFound is matched (errors.Is) by the error of a Download whose
	// file does not exist (or is not a regular file) and of a List whose
	// path is not a directory: the runtime answered 404.
	ErrNotFound = errors.New("not found in sandbox")

	// ErrResponseTooLarge is wrapped by the error of a call whose response
	// body is larger than Client.MaxResponseBytes.
	ErrResponseTooLarge = errors.New("response too large")
)

// HTTPError is a non-2xx answer from the router: either the router's own
// (400 bad headers, 502 sandbox unreachable, ...) or the runtime's, passed
// through by the router. Callers get it with errors.As.
type HTTPError struct {
	Op         string // the operation, e.g. `execute in sandbox default/x`
	StatusCode int
	Body       string // the start of the response body (at most 4 KiB)

	RequestID string // X-Request-ID sent with every attempt of the call
	Attempts  int    // attempts made, this one included

	notFound bool // a 404 that means ErrNotFound for this operation
}

// maxErrorBody bounds how much of an error response is kept; maxExcerpt how
// much of it Error prints.
const (
	maxErrorBody = 4 << 10
	maxExcerpt   = 512
)

// Error reads like `execute in sandbox default/x: router 502: {"detail":...}`.
func (e *HTTPError) Error() string {
	s := e.Op + ": " + e.status(maxExcerpt)
	if e.Attempts > 1 {
		s += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	return s
}

// status is "router 502: <body excerpt of about n bytes>".
func (e *HTTPError) status(n int) string {
	s := fmt.Sprintf("router %d", e.StatusCode)
	if e.Body == "" {
		if text := http.StatusText(e.StatusCode); text != "" {
			s += " " + text
		}
		return s
	}
	return s + ": " + excerpt(e.Body, n)
}

// summary describes a failed attempt without the operation, for retry
// logs and for the state quoted when a call times out between attempts.
func summary(err error) string {
	if h, ok := err.(*HTTPError); ok {
		return h.status(200)
	}
	return err.Error()
}

// Is makes errors.Is(err, ErrNotFound) true for a 404 from Download or List.
func (e *HTTPError) Is(target error) bool {
	return target == ErrNotFound && e.notFound
}

// excerpt trims s to about n bytes of valid UTF-8 on one line.
func excerpt(s string, n int) string {
	s = strings.TrimSpace(s)
	more := 0
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		more = len(s) - cut
		s = s[:cut]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
	if more > 0 {
		s += fmt.Sprintf("… (%d more bytes)", more)
	}
	return s
}

// bodyReadError marks a failure to read a response body (connection reset
// mid-body and the like): a transport failure, retried like one.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "reading the response: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

// formatBytes renders n like "64 MiB" or "1536 bytes".
func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
