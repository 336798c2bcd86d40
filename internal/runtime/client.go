// Package runtime is the client of the legacy python runtime's HTTP API
// (agent-sandbox examples/python-runtime-sandbox: /execute, /upload,
// /download, /list, /exists) as reached through the agent-sandbox router,
// which picks the sandbox from the X-Sandbox-* headers of each request.
//
// A Client is the router connection and its policies; a Target names the
// sandbox of one call. Both are plain values; a Client is safe for
// concurrent use once its fields are set.
//
// Every request carries X-Request-ID (16 hex characters, one per call, the
// same on each of its attempts) and the W3C traceparent of the span in the
// call's context, if any.
package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/propagation"
)

// Header names understood by the sandbox-router.
const (
	HeaderSandboxID        = "X-Sandbox-ID"
	HeaderSandboxNamespace = "X-Sandbox-Namespace"
	HeaderSandboxPort      = "X-Sandbox-Port"
	HeaderSandboxPodIP     = "X-Sandbox-Pod-IP"
	HeaderSandboxTimeout   = "X-Sandbox-Timeout"
	HeaderRequestID        = "X-Request-ID"
)

// DefaultPort is the python runtime's port, used when Target.Port is 0.
const DefaultPort = 8888

// DefaultMaxResponseBytes is Client.MaxResponseBytes' default, 64 MiB.
const DefaultMaxResponseBytes = 64 << 20

// Target names the sandbox a call goes to.
type Target struct {
	SandboxID string // the Sandbox name → X-Sandbox-ID (required, a DNS-1123 label)
	Namespace string // → X-Sandbox-Namespace; "" means "default"
	PodIP     string // → X-Sandbox-Pod-IP, so the router needs no lookup; "" leaves it to the router
	Port      int    // → X-Sandbox-Port; 0 means DefaultPort (8888)
}

// String is "namespace/name".
func (t Target) String() string { return t.namespace() + "/" + t.SandboxID }

func (t Target) namespace() string {
	if t.Namespace == "" {
		return "default"
	}
	return t.Namespace
}

// header sets the routing headers after checking them the way the router
// will, so that a bad target fails here with a clear message instead of as
// a router 400.
func (t Target) header(h http.Header) error {
	if t.SandboxID == "" {
		return errors.New("invalid target: SandboxID is empty; set it to the Sandbox's name")
	}
	if !isDNSLabel(t.SandboxID) {
		return fmt.Errorf("invalid target: SandboxID %q is not a DNS-1123 label (lowercase letters, digits and '-', at most 63), which the router requires", t.SandboxID)
	}
	if !isDNSLabel(t.namespace()) {
		return fmt.Errorf("invalid target: Namespace %q is not a DNS-1123 label", t.Namespace)
	}
	port := t.Port
	if port == 0 {
		port = DefaultPort
	}
	if port < 1 || port > 65535 {
		return fmt.Errorf("invalid target: Port %d is outside 1-65535 (0 means %d)", t.Port, DefaultPort)
	}
	h.Set(HeaderSandboxID, t.SandboxID)
	h.Set(HeaderSandboxNamespace, t.namespace())
	h.Set(HeaderSandboxPort, strconv.Itoa(port))
	if t.PodIP != "" {
		ip, err := netip.ParseAddr(t.PodIP)
		if err != nil {
			return fmt.Errorf("invalid target: PodIP %q is not an IP address", t.PodIP)
		}
		h.Set(HeaderSandboxPodIP, ip.Unmap().String())
	}
	return nil
}

func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Client calls the runtime API through a router. BaseURL is required; every
// other field has a working zero value.
type Client struct {
	// BaseURL returns the router's base URL ("http://127.0.0.1:40123", a
	// path prefix is kept). It is asked before every attempt, so a tunnel
	// that reconnects on another port is followed. An empty answer counts
	// as an unreachable router (and is retried).
	BaseURL func() string

	// HTTP sends the requests. nil means a client shared by all Clients
	// whose transport keeps up to 64 idle connections per host (many small
	// requests to one router) and which does not follow redirects: a 3xx
	// fails the call as an HTTPError. A caller's client is used as is.
	HTTP *http.Client

	// MaxResponseBytes bounds the response body of every call; a larger
	// response fails with ErrResponseTooLarge as soon as the limit is
	// passed (or from Content-Length, before reading). 0 or less means
	// DefaultMaxResponseBytes (64 MiB).
	MaxResponseBytes int64

	// Retry is the retry policy; see RetryPolicy.
	Retry RetryPolicy

	// Log, if set, gets one line per retry (printf-style, no newline),
	// naming the operation, the attempt, why it failed, the wait and the
	// request ID. Calls sharing the Client may log concurrently.
	Log func(format string, args ...any)

	// WaitRouter, if set, returns once the router can be reached again
	// (a tunnel re-established to a Ready router pod), or with ctx's end.
	// It is called before sending again an attempt that never reached a
	// runtime, which is sent again without counting against
	// RetryPolicy.Attempts (up to RetryPolicy.Resends times), even for
	// Execute. Such an attempt is one where:
	//   - there was no router URL, or the request could not be written
	//     (connection refused: the tunnel is down or being re-established);
	//   - the connection closed before any answer (the router pod went
	//     away, or a port-forward to it found no pod to reach);
	//   - the answer was 503: a router, Gateway or closing runtime that did
	//     not take the request.
	// The router's 502 is not one: the agent-sandbox router answers 502
	// {"detail":"Could not connect to the backend sandbox: ..."} both when
	// it could not dial the sandbox and when the sandbox failed mid-request.
	// One case cannot be told apart from outside: a router killed after it
	// passed the request on, before it answered. A command running then may
	// be run twice. (A router pod terminating gracefully finishes what it
	// has, and a connect.Tunnel drains its forward to it; the local
	// cluster's node kills a deleted pod at once.)
	// nil: the retry backoff alone.
	WaitRouter func(ctx context.Context) error
}

var defaultHTTPClient = sync.OnceValue(func() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{
				Timeout:   10 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          128,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			// No ResponseHeaderTimeout: a command may run for minutes
			// before /execute answers; calls are bounded by ctx and
			// WithTimeout.
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
})

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTPClient()
}

func (c *Client) maxResponseBytes() int64 {
	if c.MaxResponseBytes <= 0 {
		return DefaultMaxResponseBytes
	}
	return c.MaxResponseBytes
}

func (c *Client) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(format, args...)
	}
}

// request is one call, as sent on each attempt.
type request struct {
	op          string // for errors: `download "a" from sandbox default/x`
	method      string
	endpoint    string // relative to the base URL, already encoded
	body        []byte
	contentType string
	attempts    int
	notFound    bool // a 404 means ErrNotFound
}

// retryable is a failed attempt that may be retried.
type retryable struct {
	base      string // the router URL of the attempt
	err       error
	unreached bool // it never reached a runtime: it may be sent again (Client.WaitRouter)
}

// do sends req to t, retrying as req.attempts allows, and hands the body of
// the first 2xx response to read. The body read gives ErrResponseTooLarge
// past the limit and *bodyReadError when the connection fails.
func (c *Client) do(ctx context.Context, t Target, req request, read func(resp *http.Response, body io.Reader) error) error {
	if c.BaseURL == nil {
		return fmt.Errorf("%s: runtime.Client.BaseURL is nil; set it to a func returning the router's URL", req.op)
	}
	header := make(http.Header)
	if err := t.header(header); err != nil {
		return fmt.Errorf("%s: %w", req.op, err)
	}
	header.Set(HeaderRequestID, newRequestID())
	header.Set("User-Agent", "sandboxtest-runtime-client")
	if req.contentType != "" {
		header.Set("Content-Type", req.contentType)
	}
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(header))

	attempts := max(req.attempts, 1) // the ones that count: sends that reached something
	resends := c.Retry.resends()
	counted, resent := 0, 0
	start := time.Now()
	for attempt := 1; ; attempt++ {
		failure, err := c.attempt(ctx, req, header, attempt, attempts+resent, start, read)
		if failure == nil {
			return err // success or a final error
		}
		if ctx.Err() != nil {
			return ctxError(ctx, req.op, "waiting for the response", attempt, attempts+resent, start)
		}
		resend := failure.unreached && resent < resends
		if resend {
			resent++
		} else {
			counted++
		}
		if !resend && counted >= attempts {
			if h, ok := failure.err.(*HTTPError); ok {
				h.Attempts = attempt
				return h
			}
			if failure.base == "" {
				return fmt.Errorf("%s: no router URL after %d attempt(s): %w", req.op, attempt, failure.err)
			}
			var cut *bodyReadError
			if errors.As(failure.err, &cut) {
				return fmt.Errorf("%s: the answer through the router at %s broke off after its headers, %d attempt(s) (a command whose answer broke off is not sent again: it ran): %w",
					req.op, failure.base, attempt, failure.err)
			}
			return fmt.Errorf("%s: router at %s unreachable after %d attempt(s): %w", req.op, failure.base, attempt, failure.err)
		}
		phase := "waiting to retry after " + summary(failure.err)
		var wait time.Duration
		switch {
		case resend && c.WaitRouter != nil:
			c.logf("runtime: %s: attempt %d never reached a runtime: %v; sending it again once the router answers (resend %d of %d, request %s)",
				req.op, attempt, summary(failure.err), resent, resends, header.Get(HeaderRequestID))
			if err := c.WaitRouter(ctx); err != nil {
				if ctx.Err() != nil {
					return ctxError(ctx, req.op, "waiting for the router after "+summary(failure.err), attempt, attempts+resent, start)
				}
				c.logf("runtime: %s: waiting for the router: %v", req.op, err)
			}
			continue
		case resend:
			wait = c.Retry.wait(resent)
			c.logf("runtime: %s: attempt %d never reached a runtime: %v; sending it again in %s (resend %d of %d, request %s)",
				req.op, attempt, summary(failure.err), wait.Round(time.Millisecond), resent, resends, header.Get(HeaderRequestID))
		default:
			wait = c.Retry.wait(counted)
			c.logf("runtime: %s: attempt %d/%d failed: %v; retrying in %s (request %s)",
				req.op, counted, attempts, summary(failure.err), wait.Round(time.Millisecond), header.Get(HeaderRequestID))
		}
		if err := sleep(ctx, wait); err != nil {
			return ctxError(ctx, req.op, phase, attempt, attempts+resent, start)
		}
	}
}

// attempt makes one attempt. A non-nil *retryable means it failed in a way
// worth retrying; otherwise err is the call's result.
func (c *Client) attempt(ctx context.Context, req request, header http.Header, attempt, attempts int, start time.Time, read func(*http.Response, io.Reader) error) (*retryable, error) {
	base := strings.TrimRight(c.BaseURL(), "/")
	if base == "" {
		return &retryable{err: errors.New("Client.BaseURL returned an empty URL (is the tunnel to the router up?)"), unreached: true}, nil
	}
	u, err := url.Parse(base + "/" + req.endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: router URL %q from Client.BaseURL is not an http:// or https:// URL", req.op, base)
	}
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hreq, err := http.NewRequestWithContext(ctx, req.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s: building the request: %w", req.op, err)
	}
	hreq.Header = header.Clone()
	if deadline, ok := ctx.Deadline(); ok {
		if left := time.Until(deadline); left > 0 {
			// Read by the python router only; the Go router ignores it.
			hreq.Header.Set(HeaderSandboxTimeout, strconv.FormatFloat(left.Seconds(), 'f', 3, 64))
		}
	}

	var wrote atomic.Bool
	hreq = hreq.WithContext(httptrace.WithClientTrace(hreq.Context(), &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { wrote.Store(i.Err == nil) },
	}))
	resp, err := c.httpClient().Do(hreq)
	if err != nil {
		if untrusted(err) {
			// Sending again changes nothing: the transport needs the CA.
			return nil, fmt.Errorf("%s: router at %s: %w", req.op, base, err)
		}
		return &retryable{base: base, err: err, unreached: !wrote.Load() || closedWithoutAnswer(err)}, nil
	}
	// No draining before Close: every path that keeps the connection
	// worth reusing has read the body to its end already, and draining a
	// stalled body would hang the call.
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		herr := &HTTPError{
			Op:         req.op,
			StatusCode: resp.StatusCode,
			Body:       string(excerpt),
			RequestID:  header.Get(HeaderRequestID),
			Attempts:   attempt,
			notFound:   req.notFound && resp.StatusCode == http.StatusNotFound,
		}
		switch resp.StatusCode {
		case http.StatusServiceUnavailable:
			return &retryable{base: base, err: herr, unreached: true}, nil
		case http.StatusBadGateway, http.StatusGatewayTimeout:
			return &retryable{base: base, err: herr}, nil
		}
		return nil, herr
	}

	limit := c.maxResponseBytes()
	if resp.ContentLength > limit {
		return nil, tooLarge(req.op, limit, fmt.Sprintf("Content-Length is %d", resp.ContentLength))
	}
	err = read(resp, &cappedReader{r: resp.Body, left: limit + 1})
	var readErr *bodyReadError
	switch {
	case err == nil:
		return nil, nil
	case ctx.Err() != nil:
		return nil, ctxError(ctx, req.op, "reading the response", attempt, attempts, start)
	case errors.Is(err, ErrResponseTooLarge):
		return nil, tooLarge(req.op, limit, "")
	case errors.As(err, &readErr):
		return &retryable{base: base, err: readErr}, nil
	}
	return nil, fmt.Errorf("%s: %w", req.op, err)
}

// closedWithoutAnswer says whether a transport error is the connection
// ending before any byte of an answer: what a client sees when the router
// (or the port-forward in front of it) goes away with the request unread.
// untrusted reports a TLS handshake that failed on the certificate: the
// router's (or Gateway's) CA is not the transport's, which no retry mends.
func untrusted(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid)
}

func closedWithoutAnswer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func tooLarge(op string, limit int64, detail string) error {
	if detail != "" {
		detail = "; " + detail
	}
	return fmt.Errorf("%s: %w: over the %s limit (Client.MaxResponseBytes)%s", op, ErrResponseTooLarge, formatBytes(limit), detail)
}

// ctxError reports a call ended by its context: it wraps ctx.Err() (and the
// cause, when WithTimeout or the caller set one) and says in which phase,
// after how many attempts and how long.
func ctxError(ctx context.Context, op, phase string, attempt, attempts int, start time.Time) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	where := fmt.Sprintf("while %s (attempt %d of %d", phase, attempt, max(attempts, 1))
	if !start.IsZero() {
		where += fmt.Sprintf(", %s into the call", time.Since(start).Round(time.Millisecond))
	}
	where += ")"
	if cause != nil && cause != err {
		if errors.Is(cause, err) {
			return fmt.Errorf("%s: %w %s", op, cause, where)
		}
		return fmt.Errorf("%s: %w (%w) %s", op, err, cause, where)
	}
	return fmt.Errorf("%s: %w %s", op, err, where)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// cappedReader reads at most left-1 bytes; reading more gives
// ErrResponseTooLarge. Read errors other than EOF become *bodyReadError.
type cappedReader struct {
	r    io.Reader
	left int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, ErrResponseTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left <= 0 {
		return n, ErrResponseTooLarge
	}
	if err != nil && err != io.EOF {
		err = &bodyReadError{err}
	}
	return n, err
}
