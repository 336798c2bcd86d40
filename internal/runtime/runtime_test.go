package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/agentsandbox/go-sandboxtest/internal/runtimeserver"
)

// target is what every test addresses; the fake router insists on it.
var target = Target{SandboxID: "sbx-1", Namespace: "tests", PodIP: "10.0.0.7"}

var requestIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

// seen is what the fake router recorded of one request.
type seen struct {
	method, path, requestID, traceparent string
}

// fakeRouter stands in for the sandbox-router: it checks the routing
// headers, strips them and hands the request to a runtimeserver. It can be
// told to answer the next requests with an error status instead, or to
// handle a request itself (override).
type fakeRouter struct {
	t    *testing.T
	srv  *httptest.Server
	root string

	mu       sync.Mutex
	fail     int // answer failCode to the next fail requests
	failCode int
	override func(w http.ResponseWriter, r *http.Request) bool
	seen     []seen
	arrived  chan struct{} // gets a value per forwarded request (buffered)
}

func newFakeRouter(t *testing.T) *fakeRouter {
	t.Helper()
	root := t.TempDir()
	rt := &runtimeserver.Server{Root: root}
	fr := &fakeRouter{t: t, root: root, arrived: make(chan struct{}, 100)}
	fr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !fr.check(w, r) {
			return
		}
		fr.mu.Lock()
		fail, code, override := fr.fail, fr.failCode, fr.override
		if fail > 0 {
			fr.fail--
		}
		fr.mu.Unlock()
		if fail > 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"detail":"fake router: answering %d on purpose"}`, code)
			return
		}
		if override != nil && override(w, r) {
			return
		}
		for _, h := range []string{HeaderSandboxID, HeaderSandboxNamespace, HeaderSandboxPort, HeaderSandboxPodIP, HeaderSandboxTimeout, HeaderRequestID, "Traceparent", "Tracestate"} {
			r.Header.Del(h)
		}
		select {
		case fr.arrived <- struct{}{}:
		default:
		}
		rt.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() { fr.srv.Close(); rt.Close() })
	return fr
}

// check verifies the headers every request must carry and records it.
func (fr *fakeRouter) check(w http.ResponseWriter, r *http.Request) bool {
	var problems []string
	want := map[string]string{
		HeaderSandboxID:        target.SandboxID,
		HeaderSandboxNamespace: target.Namespace,
		HeaderSandboxPort:      "8888",
		HeaderSandboxPodIP:     target.PodIP,
	}
	for h, v := range want {
		if got := r.Header.Get(h); got != v {
			problems = append(problems, fmt.Sprintf("%s = %q, want %q", h, got, v))
		}
	}
	id := r.Header.Get(HeaderRequestID)
	if !requestIDPattern.MatchString(id) {
		problems = append(problems, fmt.Sprintf("%s = %q, want 16 lowercase hex characters", HeaderRequestID, id))
	}
	fr.mu.Lock()
	fr.seen = append(fr.seen, seen{r.Method, r.URL.EscapedPath(), id, r.Header.Get("Traceparent")})
	fr.mu.Unlock()
	if len(problems) > 0 {
		fr.t.Errorf("fake router: %s %s: %s", r.Method, r.URL.EscapedPath(), strings.Join(problems, "; "))
		http.Error(w, `{"detail":"bad headers"}`, http.StatusBadRequest)
		return false
	}
	return true
}

func (fr *fakeRouter) requests() []seen {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return append([]seen(nil), fr.seen...)
}

func (fr *fakeRouter) reset() {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	fr.seen = nil
}

func (fr *fakeRouter) failNext(n, code int) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	fr.fail, fr.failCode = n, code
}

// client returns a client of fr with fast retries.
func (fr *fakeRouter) client() *Client {
	return &Client{
		BaseURL: func() string { return fr.srv.URL },
		Retry:   RetryPolicy{Backoff: time.Millisecond},
	}
}

func mustExecute(t *testing.T, c *Client, command string) ExecResult {
	t.Helper()
	res, err := c.Execute(context.Background(), target, command)
	if err != nil {
		t.Fatalf("Execute(%q): %v", command, err)
	}
	return res
}

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a/b", "a/b"},
		{"/a/b", "a/b"},
		{"//a//b/./c/", "a/b/c"},
		{"a/../b", "b"},
		{"", "."},
		{"/", "."},
		{".", "."},
		{"a/..", "."},
		{"..a/b", "..a/b"},
		{"sp ace/ünï.txt", "sp ace/ünï.txt"},
	} {
		got, err := CleanPath(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q, nil", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, why string }{
		{"../../etc/passwd", "escapes the sandbox root"},
		{"..", "escapes the sandbox root"},
		{"/../x", "escapes the sandbox root"},
		{"a/../../x", "escapes the sandbox root"},
		{"a\x00b", "NUL"},
	} {
		got, err := CleanPath(tc.in)
		if err == nil {
			t.Errorf("CleanPath(%q) = %q, want an error", tc.in, got)
			continue
		}
		if !errors.Is(err, ErrInvalidPath) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.in)) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("CleanPath(%q) error = %q; want ErrInvalidPath naming the path and %q", tc.in, err, tc.why)
		}
	}
}

func TestEncodePath(t *testing.T) {
	for in, want := range map[string]string{
		"dir/a b%.txt": "dir%2Fa%20b%25.txt",
		"AZaz09-_.~":   "AZaz09-_.~",
		"é":            "%C3%A9",
		".":            "%2E",
		"..":           "%2E%2E",
		"a+b?c#d":      "a%2Bb%3Fc%23d",
	} {
		if got := encodePath(in); got != want {
			t.Errorf("encodePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExecute(t *testing.T) {
	fr := newFakeRouter(t)
	c := fr.client()
	for _, tc := range []struct {
		command string
		want    ExecResult
	}{
		{"echo hello", ExecResult{Stdout: "hello\n"}},
		{"true", ExecResult{}},
		{"false", ExecResult{ExitCode: 1}},
		{`sh -c "exit 7"`, ExecResult{ExitCode: 7}},
		{`sh -c "echo out; echo err >&2; exit 3"`, ExecResult{Stdout: "out\n", Stderr: "err\n", ExitCode: 3}},
	} {
		if got := mustExecute(t, c, tc.command); got != tc.want {
			t.Errorf("Execute(%q) = %+v, want %+v", tc.command, got, tc.want)
		}
	}
	for _, r := range fr.requests() {
		if r.method != http.MethodPost || r.path != "/execute" {
			t.Errorf("router saw %s %s, want POST /execute", r.method, r.path)
		}
	}
}

func TestExecuteLargeOutput(t *testing.T) {
	fr := newFakeRouter(t)
	c := fr.client()
	const size = 16 << 20
	cmd := fmt.Sprintf(`sh -c "head -c %d /dev/zero | tr '\\000' x"`, size)
	res := mustExecute(t, c, cmd)
	if len(res.Stdout) != size || strings.Trim(res.Stdout, "x") != "" || res.ExitCode != 0 {
		t.Fatalf("Execute(16 MiB of x): stdout %d bytes (only x: %v), exit %d, stderr %q",
			len(res.Stdout), strings.Trim(res.Stdout, "x") == "", res.ExitCode, res.Stderr)
	}

	c.MaxResponseBytes = 1 << 20
	_, err := c.Execute(context.Background(), target, fmt.Sprintf(`sh -c "head -c %d /dev/zero | tr '\\000' x"`, 2<<20))
	if !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("Execute(2 MiB) with a 1 MiB limit: err = %v, want ErrResponseTooLarge", err)
	}
	for _, part := range []string{"execute in sandbox tests/sbx-1", "1 MiB", "MaxResponseBytes"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not mention %q", err, part)
		}
	}
}

// A response without Content-Length must be cut off while it is read, not
// after: the router streams 256 MiB and the client must stop near its limit.
func TestResponseLimitWhileReading(t *testing.T) {
	fr := newFakeRouter(t)
	var written int64
	done := make(chan struct{})
	fr.override = func(w http.ResponseWriter, r *http.Request) bool {
		defer close(done)
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := bytes.Repeat([]byte("z"), 64<<10)
		for written < 256<<20 {
			n, err := w.Write(chunk)
			written += int64(n)
			if err != nil {
				break
			}
			w.(http.Flusher).Flush()
		}
		return true
	}
	c := fr.client()
	c.MaxResponseBytes = 1 << 20
	_, err := c.Download(context.Background(), target, "stream")
	if !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("Download(endless stream): err = %v, want ErrResponseTooLarge", err)
	}
	<-done
	if written >= 128<<20 {
		t.Errorf("the router wrote %d bytes before the client gave up; the limit was not enforced while reading", written)
	}
	if n := len(fr.requests()); n != 1 {
		t.Errorf("router saw %d requests, want 1 (a too-large response is not retried)", n)
	}
}

// A response announcing more than the limit fails before its body is read:
// this router sends a few bytes of a 2 MiB body, then stalls.
func TestResponseLimitFromContentLength(t *testing.T) {
	fr := newFakeRouter(t)
	fr.override = func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Length", fmt.Sprint(2<<20))
		_, _ = w.Write([]byte("0123456789"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return true
	}
	c := fr.client()
	c.MaxResponseBytes = 1 << 20
	_, err := c.Download(context.Background(), target, "big")
	if !errors.Is(err, ErrResponseTooLarge) || !strings.Contains(err.Error(), "Content-Length is 2097152") {
		t.Errorf("Download(2 MiB announced): err = %v, want ErrResponseTooLarge from Content-Length", err)
	}
}

func TestFilesRoundTrip(t *testing.T) {
	fr := newFakeRouter(t)
	c := fr.client()
	ctx := context.Background()
	if res := mustExecute(t, c, `mkdir -p "dir/sub" "dir/sp ace/ünï"`); res.ExitCode != 0 {
		t.Fatalf("mkdir: %+v", res)
	}

	binary := make([]byte, 3*256+5)
	for i := range binary {
		binary[i] = byte(i)
	}
	files := map[string][]byte{
		"dir/sub/data.bin":             binary,
		"dir/empty.txt":                {},
		"dir/sp ace/ünï/名前 ñ 100%.txt": []byte("unicode and spaces\n"),
	}
	for p, data := range files {
		if err := c.Upload(ctx, target, p, data); err != nil {
			t.Fatalf("Upload(%q): %v", p, err)
		}
		// The file landed where the path says, not only somewhere the
		// download finds it again.
		onDisk, err := os.ReadFile(filepath.Join(fr.root, filepath.FromSlash(p)))
		if err != nil || !bytes.Equal(onDisk, data) {
			t.Errorf("after Upload(%q) the runtime's file holds %q, %v; want %q", p, onDisk, err, data)
		}
		got, err := c.Download(ctx, target, "/"+p) // a leading "/" means the root
		if err != nil {
			t.Fatalf("Download(%q): %v", p, err)
		}
		if got == nil || !bytes.Equal(got, data) {
			t.Errorf("Download(%q) = %q (nil: %v), want %q", p, got, got == nil, data)
		}
	}

	var sawEncoded bool
	for _, r := range fr.requests() {
		if r.path == "/download/dir%2Fsub%2Fdata.bin" {
			sawEncoded = true
		}
	}
	if !sawEncoded {
		t.Errorf("router never saw /download/dir%%2Fsub%%2Fdata.bin; requests: %+v", fr.requests())
	}

	entries, err := c.List(ctx, target, "dir")
	if err != nil {
		t.Fatalf("List(dir): %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name+":"+e.Type)
		if e.Name == "empty.txt" {
			fi, err := os.Stat(filepath.Join(fr.root, "dir", "empty.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if e.Size != 0 || e.ModTime.Sub(fi.ModTime()).Abs() > time.Millisecond {
				t.Errorf("List entry %+v; want size 0 and mod time %v", e, fi.ModTime())
			}
		}
	}
	if got, want := strings.Join(names, " "), "empty.txt:file sp ace:directory sub:directory"; got != want {
		t.Errorf("List(dir) = %s, want %s", got, want)
	}
	if entries, err := c.List(ctx, target, "dir/sub"); err != nil || len(entries) != 1 || entries[0].Size != int64(len(binary)) {
		t.Errorf("List(dir/sub) = %+v, %v; want data.bin of %d bytes", entries, err, len(binary))
	}
	if entries, err := c.List(ctx, target, "/"); err != nil || len(entries) != 1 || entries[0].Name != "dir" {
		t.Errorf("List(/) = %+v, %v; want [dir]", entries, err)
	}

	for p, want := range map[string]bool{
		"dir/sub/data.bin":             true,
		"dir/sp ace/ünï/名前 ñ 100%.txt": true,
		"dir/sub":                      true,
		"dir/nope":                     false,
	} {
		if got, err := c.Exists(ctx, target, p); err != nil || got != want {
			t.Errorf("Exists(%q) = %v, %v; want %v", p, got, err, want)
		}
	}
}

func TestNotFound(t *testing.T) {
	fr := newFakeRouter(t)
	c := fr.client()
	ctx := context.Background()
	mustExecute(t, c, "mkdir d")

	_, err := c.Download(ctx, target, "missing.txt")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Download(missing): err = %v, want ErrNotFound", err)
	}
	var herr *HTTPError
	if !errors.As(err, &herr) || herr.StatusCode != 404 {
		t.Errorf("Download(missing): err = %#v, want an *HTTPError with status 404", err)
	}
	if want := `download "missing.txt" from sandbox tests/sbx-1: router 404: {"message":"File not found"}`; err.Error() != want {
		t.Errorf("Download(missing) error:\n got %s\nwant %s", err, want)
	}
	if _, err := c.Download(ctx, target, "d"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Download(a directory): err = %v, want ErrNotFound", err)
	}
	if _, err := c.List(ctx, target, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("List(missing): err = %v, want ErrNotFound", err)
	}
	// Upload does not create parents: a plain HTTP error, not ErrNotFound.
	err = c.Upload(ctx, target, "no/such/dir/f.txt", []byte("x"))
	if !errors.As(err, &herr) || herr.StatusCode != 500 || errors.Is(err, ErrNotFound) {
		t.Errorf("Upload(without parent): err = %v, want a 500 HTTPError", err)
	}
	if n := len(fr.requests()); n != 5 {
		t.Errorf("router saw %d requests, want 5 (404 and 500 are not retried)", n)
	}
}

func TestPathEscapeRefusedClientSide(t *testing.T) {
	fr := newFakeRouter(t)
	c := fr.client()
	ctx := context.Background()
	const bad = "../../etc/passwd"
	_, errDownload := c.Download(ctx, target, bad)
	errUpload := c.Upload(ctx, target, bad, []byte("x"))
	_, errList := c.List(ctx, target, bad)
	_, errExists := c.Exists(ctx, target, bad)
	errRoot := c.Upload(ctx, target, "/", []byte("x"))
	errNewline := c.Upload(ctx, target, "a\nb", []byte("x"))
	for i, err := range []error{errDownload, errUpload, errList, errExists, errRoot, errNewline} {
		if !errors.Is(err, ErrInvalidPath) {
			t.Errorf("call %d: err = %v, want ErrInvalidPath", i, err)
		}
	}
	if !strings.Contains(errDownload.Error(), `"../../etc/passwd"`) || !strings.Contains(errDownload.Error(), "escapes") {
		t.Errorf("error %q should name the path and say it escapes", errDownload)
	}
	if got := fr.requests(); len(got) != 0 {
		t.Errorf("router saw %d requests for refused paths, want none: %+v", len(got), got)
	}
}

func TestInvalidTarget(t *testing.T) {
	fr := newFakeRouter(t)
	c := fr.client()
	for _, tg := range []Target{{}, {SandboxID: "Bad_ID"}, {SandboxID: "ok", PodIP: "10.0.0.7\r\nX: y"}, {SandboxID: "ok", Port: 70000}} {
		if _, err := c.Exists(context.Background(), tg, "x"); err == nil || !strings.Contains(err.Error(), "invalid target") {
			t.Errorf("Exists with target %+v: err = %v, want an invalid target error", tg, err)
		}
	}
	if got := fr.requests(); len(got) != 0 {
		t.Errorf("router saw %d requests for invalid targets, want none", len(got))
	}
}

func TestHeadersAndTraceparent(t *testing.T) {
	fr := newFakeRouter(t)
	c := fr.client()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("runtime-test").Start(context.Background(), "test")
	defer span.End()

	if _, err := c.Exists(ctx, target, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exists(context.Background(), target, "x"); err != nil {
		t.Fatal(err)
	}
	reqs := fr.requests()
	if len(reqs) != 2 {
		t.Fatalf("router saw %d requests, want 2", len(reqs))
	}
	sc := span.SpanContext()
	if want := fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID()); reqs[0].traceparent != want {
		t.Errorf("traceparent with a span in ctx = %q, want %q", reqs[0].traceparent, want)
	}
	if reqs[1].traceparent != "" {
		t.Errorf("traceparent without a span = %q, want none", reqs[1].traceparent)
	}
	if reqs[0].requestID == reqs[1].requestID {
		t.Errorf("two calls share X-Request-ID %s", reqs[0].requestID)
	}
}

func TestDownloadRetries504(t *testing.T) {
	fr := newFakeRouter(t)
	c := fr.client()
	c.Retry = RetryPolicy{} // the defaults: 5 attempts, 100ms doubling
	var logs []string
	c.Log = func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }
	if err := c.Upload(context.Background(), target, "f.txt", []byte("content")); err != nil {
		t.Fatal(err)
	}
	fr.reset()

	fr.failNext(2, http.StatusGatewayTimeout)
	got, err := c.Download(context.Background(), target, "f.txt")
	if err != nil || string(got) != "content" {
		t.Fatalf("Download after two 504s = %q, %v; want content", got, err)
	}
	reqs := fr.requests()
	if len(reqs) != 3 {
		t.Fatalf("router saw %d attempts, want 3", len(reqs))
	}
	for _, r := range reqs[1:] {
		if r.requestID != reqs[0].requestID {
			t.Errorf("X-Request-ID changed across retries: %s then %s", reqs[0].requestID, r.requestID)
		}
	}
	if len(logs) != 2 || !strings.Contains(logs[0], "504") || !strings.Contains(logs[0], "attempt 1/5") {
		t.Errorf("retry log = %q, want 2 lines, the first naming 504 and attempt 1/5", logs)
	}
}

func TestExecuteRetries(t *testing.T) {
	fr := newFakeRouter(t)
	c := fr.client()
	ctx := context.Background()

	fr.failNext(2, http.StatusBadGateway)
	_, err := c.Execute(ctx, target, "echo hi")
	var herr *HTTPError
	if !errors.As(err, &herr) || herr.StatusCode != 502 {
		t.Fatalf("Execute behind a 502: err = %v, want a 502 HTTPError", err)
	}
	if want := "execute in sandbox tests/sbx-1: router 502: {"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start with %q", err, want)
	}
	if n := len(fr.requests()); n != 1 {
		t.Errorf("Execute made %d attempts by default, want 1", n)
	}

	// A 503 was not taken by anyone: Execute sends it again, up to
	// Retry.Resends (default 5) times.
	fr.reset()
	fr.failNext(2, http.StatusServiceUnavailable)
	res, err := c.Execute(ctx, target, "echo hi")
	if err != nil || res.Stdout != "hi\n" || len(fr.requests()) != 3 {
		t.Errorf("Execute behind two 503s = %+v, %v after %d requests; want hi after 3", res, err, len(fr.requests()))
	}
	fr.reset()
	fr.failNext(10, http.StatusServiceUnavailable)
	_, err = c.Execute(ctx, target, "echo hi")
	if !errors.As(err, &herr) || herr.StatusCode != 503 || herr.Attempts != 6 || len(fr.requests()) != 6 {
		t.Errorf("Execute behind ten 503s: err = %v after %d requests; want a 503 after 6", err, len(fr.requests()))
	}
	fr.failNext(0, 0)

	fr.reset()
	fr.failNext(2, http.StatusBadGateway)
	_, err = c.Execute(ctx, target, "echo hi", WithRetries(1))
	if !errors.As(err, &herr) || herr.Attempts != 2 || len(fr.requests()) != 2 {
		t.Errorf("Execute WithRetries(1) behind two 502s: err = %v, %d requests; want a 502 after 2 attempts", err, len(fr.requests()))
	}

	fr.reset()
	fr.failNext(2, http.StatusGatewayTimeout)
	res, err = c.Execute(ctx, target, "echo hi", WithRetries(3))
	if err != nil || res.Stdout != "hi\n" {
		t.Fatalf("Execute WithRetries(3) behind two 504s = %+v, %v; want hi", res, err)
	}
	if n := len(fr.requests()); n != 3 {
		t.Errorf("Execute WithRetries(3) made %d attempts, want 3", n)
	}

	// Statuses other than 502/503/504 are final.
	fr.reset()
	fr.failNext(1, http.StatusInternalServerError)
	if _, err := c.Exists(ctx, target, "x"); !errors.As(err, &herr) || herr.StatusCode != 500 || len(fr.requests()) != 1 {
		t.Errorf("Exists behind a 500: err = %v after %d requests; want a 500 at once", err, len(fr.requests()))
	}
}

func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestTransportErrorRetry(t *testing.T) {
	base := closedURL(t)
	var logs int
	c := &Client{
		BaseURL: func() string { return base },
		Retry:   RetryPolicy{Backoff: time.Millisecond},
		Log:     func(string, ...any) { logs++ },
	}
	_, err := c.Exists(context.Background(), target, "x")
	if err == nil {
		t.Fatal("Exists on a closed port succeeded")
	}
	// A refused connection reached nothing: 5 resends, then 5 counted attempts.
	for _, part := range []string{`exists "x" in sandbox tests/sbx-1`, base, "after 10 attempt(s)", "refused"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not mention %q", err, part)
		}
	}
	if logs != 9 {
		t.Errorf("%d retry log lines, want 9", logs)
	}

	logs = 0
	if _, err := c.Execute(context.Background(), target, "true"); err == nil || !strings.Contains(err.Error(), "after 6 attempt(s)") || logs != 5 {
		t.Errorf("Execute on a closed port: err = %v, %d resends; want a failure after 6 attempts", err, logs)
	}
	logs = 0
	c.Retry.Resends = -1
	if _, err := c.Execute(context.Background(), target, "true"); err == nil || !strings.Contains(err.Error(), "after 1 attempt(s)") || logs != 0 {
		t.Errorf("Execute on a closed port, no resends: err = %v, %d resends; want a failure after 1 attempt", err, logs)
	}
}

// TestResendOnlyWhatReachedNothing: Execute is sent again, after
// WaitRouter, when the connection closed before any answer; not when the
// answer broke off (the command ran).
func TestResendOnlyWhatReachedNothing(t *testing.T) {
	fr := newFakeRouter(t)
	c := fr.client()
	var waits int
	c.WaitRouter = func(context.Context) error { waits++; return nil }
	ctx := context.Background()
	hangUp := 2
	fr.override = func(w http.ResponseWriter, r *http.Request) bool {
		if hangUp == 0 {
			return false
		}
		hangUp--
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return true
		}
		conn.Close() // gone with the request unanswered, as a router pod deleted
		return true
	}
	res, err := c.Execute(ctx, target, "echo again")
	if err != nil || res.Stdout != "again\n" || waits != 2 || len(fr.requests()) != 3 {
		t.Errorf("Execute behind two hang-ups = %+v, %v after %d requests and %d waits; want again after 3 and 2", res, err, len(fr.requests()), waits)
	}

	fr.reset()
	waits = 0
	fr.override = func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"stdout":"par`)
		return true // the handler returns: the answer breaks off mid-body
	}
	_, err = c.Execute(ctx, target, "echo once")
	if err == nil || waits != 0 || len(fr.requests()) != 1 {
		t.Errorf("Execute whose answer broke off: err = %v after %d requests and %d waits; want an error after 1 and 0", err, len(fr.requests()), waits)
	}
	if err != nil && (!strings.Contains(err.Error(), "broke off after its headers") || !errors.Is(err, io.ErrUnexpectedEOF)) {
		t.Errorf("Execute whose answer broke off: err = %v; want it to say the answer broke off, wrapping io.ErrUnexpectedEOF", err)
	}
}

func TestBaseURLAskedPerAttempt(t *testing.T) {
	a, b := newFakeRouter(t), newFakeRouter(t)
	down := closedURL(t)
	var mu sync.Mutex
	urls := []string{a.srv.URL, b.srv.URL, down, a.srv.URL}
	calls := 0
	c := &Client{
		BaseURL: func() string {
			mu.Lock()
			defer mu.Unlock()
			calls++
			return urls[(calls-1)%len(urls)]
		},
		Retry: RetryPolicy{Backoff: time.Millisecond},
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := c.Exists(ctx, target, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if na, nb := len(a.requests()), len(b.requests()); na != 1 || nb != 1 {
		t.Fatalf("after two calls router A saw %d and B %d requests, want 1 each", na, nb)
	}
	// The third call's first attempt meets the closed port; its retry
	// asks again and reaches A.
	if _, err := c.Exists(ctx, target, "x"); err != nil {
		t.Fatalf("Exists whose first attempt hit a closed port: %v", err)
	}
	if na := len(a.requests()); na != 2 || calls != 4 {
		t.Errorf("router A saw %d requests and BaseURL was asked %d times, want 2 and 4", na, calls)
	}
}

func TestCancelMidExecute(t *testing.T) {
	fr := newFakeRouter(t)
	c := fr.client()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-fr.arrived
		time.Sleep(50 * time.Millisecond) // let the command start
		cancel()
	}()
	done := make(chan error, 1)
	go func() {
		_, err := c.Execute(ctx, target, "sleep 5")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "execute in sandbox tests/sbx-1: context canceled") {
			t.Errorf("cancelled Execute: err = %v, want context.Canceled wrapped with the operation", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Execute(sleep 5) did not return after its context was cancelled")
	}
}

func TestWithTimeout(t *testing.T) {
	fr := newFakeRouter(t)
	c := fr.client()
	_, err := c.Execute(context.Background(), target, "sleep 5", WithTimeout(200*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "WithTimeout") || !strings.Contains(err.Error(), "waiting for the response") {
		t.Errorf("Execute past WithTimeout: err = %v, want DeadlineExceeded naming WithTimeout and the phase", err)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	fr := newFakeRouter(t)
	fr.override = func(w http.ResponseWriter, r *http.Request) bool {
		http.Redirect(w, r, "http://example.invalid/elsewhere", http.StatusFound)
		return true
	}
	_, err := fr.client().Download(context.Background(), target, "f")
	var herr *HTTPError
	if !errors.As(err, &herr) || herr.StatusCode != http.StatusFound {
		t.Errorf("Download answered with a redirect: err = %v, want a 302 HTTPError", err)
	}
}

func TestHTTPErrorExcerpt(t *testing.T) {
	e := &HTTPError{Op: "op", StatusCode: 502, Body: strings.Repeat("é", 1000) + "\n"}
	msg := e.Error()
	if !strings.HasPrefix(msg, "op: router 502: é") || !strings.Contains(msg, "more bytes)") || len(msg) > 600 || strings.Contains(msg, "\n") {
		t.Errorf("Error() = %q (%d bytes); want a one-line excerpt of about 512 bytes", msg, len(msg))
	}
	if errors.Is(e, ErrNotFound) {
		t.Error("a 502 HTTPError matches ErrNotFound")
	}
}

func TestFileEntryJSON(t *testing.T) {
	var e FileEntry
	if err := json.Unmarshal([]byte(`{"name":"a","size":3,"type":"file","mod_time":1700000000.25}`), &e); err != nil {
		t.Fatal(err)
	}
	want := FileEntry{Name: "a", Size: 3, Type: TypeFile, ModTime: time.Unix(1700000000, 250000000)}
	if !e.ModTime.Equal(want.ModTime) || e.Name != want.Name || e.Size != want.Size || e.Type != want.Type {
		t.Errorf("decoded %+v, want %+v", e, want)
	}
	b, err := json.Marshal(e)
	if err != nil || string(b) != `{"name":"a","size":3,"type":"file","mod_time":1700000000.25}` {
		t.Errorf("Marshal = %s, %v", b, err)
	}
}

func TestRetryWait(t *testing.T) {
	p := RetryPolicy{}
	for n, base := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 5: 1600 * time.Millisecond, 6: 2 * time.Second, 30: 2 * time.Second} {
		for i := 0; i < 20; i++ {
			if w := p.wait(n); w < base*3/4 || w >= base*5/4 {
				t.Fatalf("wait(%d) = %v, want within ±25%% of %v", n, w, base)
			}
		}
	}
}

// TestUntrustedCertificateIsFinal: a router whose certificate the transport
// does not trust fails the call at once, naming the cause: no resend, no
// retry, no wait for the router.
func TestUntrustedCertificateIsFinal(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the request got through: %s %s", r.Method, r.URL)
	}))
	defer srv.Close()
	var logs, waits int
	c := &Client{
		BaseURL:    func() string { return srv.URL },
		HTTP:       &http.Client{Transport: &http.Transport{}}, // the system's roots
		Retry:      RetryPolicy{Backoff: time.Millisecond},
		Log:        func(string, ...any) { logs++ },
		WaitRouter: func(context.Context) error { waits++; return nil },
	}
	_, err := c.Execute(context.Background(), target, "true")
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("err = %v, want the certificate error and the router's URL", err)
	}
	if logs != 0 || waits != 0 {
		t.Errorf("%d retries and %d waits for the router; want none", logs, waits)
	}
}
