package runtimeserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentsandbox/go-sandboxtest/internal/runtime"
)

// A web page can POST text/plain (or urlencoded, or multipart) to any
// address without a CORS preflight ("no-cors"): /execute must refuse it.
func TestExecuteRequiresJSON(t *testing.T) {
	_, ts, root := newTestServer(t, nil)
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "application/jsonx", "not a media type"} {
		code, body, _ := do(t, context.Background(), http.MethodPost, ts.URL+"/execute", ct, strings.NewReader(`{"command": "touch pwned"}`))
		if code != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %q: got %d %s, want 415", ct, code, body)
		}
		var resp struct{ Detail string }
		if err := json.Unmarshal(body, &resp); err != nil || !strings.Contains(resp.Detail, "application/json") {
			t.Errorf("Content-Type %q: body %s does not name application/json in its detail", ct, body)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "pwned")); err == nil {
		t.Fatal("a refused request ran its command")
	}
	code, body, _ := do(t, context.Background(), http.MethodPost, ts.URL+"/execute", "application/json; charset=utf-8", strings.NewReader(`{"command": "true"}`))
	if code != http.StatusOK {
		t.Errorf("application/json with a charset: %d %s", code, body)
	}
}

func TestUploadRequiresMultipart(t *testing.T) {
	_, ts, root := newTestServer(t, nil)
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	part, _ := mw.CreateFormFile("file", "x.txt")
	part.Write([]byte("content"))
	mw.Close()
	for _, ct := range []string{"application/json", "text/plain", "application/octet-stream", ""} {
		code, body, _ := do(t, context.Background(), http.MethodPost, ts.URL+"/upload", ct, bytes.NewReader(form.Bytes()))
		if code != http.StatusUnsupportedMediaType || !strings.Contains(string(body), `"detail":`) {
			t.Errorf("Content-Type %q: got %d %s, want 415 with a detail", ct, code, body)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "x.txt")); err == nil {
		t.Fatal("a refused upload wrote its file")
	}
	if code, body := upload(t, ts.URL, "x.txt", []byte("content")); code != http.StatusOK {
		t.Errorf("multipart upload: %d %s", code, body)
	}
}

// chunked hides the length of r from net/http, so the body is sent chunked
// and only the server's reader can notice that it is too long.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestBodyTooLarge(t *testing.T) {
	_, ts, root := newTestServer(t, func(s *Server) { s.uploadLimit = 1 << 20 })
	big := `{"command": "touch pwned", "pad": "` + strings.Repeat("x", maxExecuteBody) + `"}`
	for name, body := range map[string]io.Reader{
		"with Content-Length": strings.NewReader(big),
		"chunked":             chunked{strings.NewReader(big)},
	} {
		code, resp, _ := do(t, context.Background(), http.MethodPost, ts.URL+"/execute", "application/json", body)
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(resp), `"detail":"Request body too large`) {
			t.Errorf("/execute %s: got %d %s, want 413", name, code, resp)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "pwned")); err == nil {
		t.Fatal("an oversize request ran its command")
	}

	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	part, _ := mw.CreateFormFile("file", "big.bin")
	part.Write(make([]byte, 2<<20))
	mw.Close()
	code, resp, _ := do(t, context.Background(), http.MethodPost, ts.URL+"/upload", mw.FormDataContentType(), chunked{&form})
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("/upload chunked: got %d %s, want 413", code, resp)
	}
	if _, err := os.Stat(filepath.Join(root, "big.bin")); err == nil {
		t.Error("an oversize upload wrote its file")
	}
}

// The real upload limit is refused from Content-Length alone, before any of
// the body is sent.
func TestUploadTooLargeFromContentLength(t *testing.T) {
	_, ts, _ := newTestServer(t, nil)
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: %d\r\n\r\n", maxUploadBody+1)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), fmt.Sprint(maxUploadBody)) {
		t.Errorf("got %d %s, want 413 naming the limit", resp.StatusCode, body)
	}
}

// checkTruncated checks one stream of a truncated answer: it starts with
// want's beginning, ends with the marker line and fits in limit once
// encoded as writeJSON does.
func checkTruncated(t *testing.T, name, got, prefixOf string, limit int) {
	t.Helper()
	enc, _ := json.Marshal(got)
	if len(enc)-2 > limit {
		t.Errorf("%s: %d bytes encoded, over the %d limit", name, len(enc)-2, limit)
	}
	i := strings.LastIndex(got, "[runtimeserver: "+name+" truncated here")
	if i < 0 || !strings.HasSuffix(got, "]\n") || (i > 0 && got[i-1] != '\n') {
		t.Fatalf("%s: no marker line at the end: ...%q", name, got[max(0, len(got)-300):])
	}
	if kept := got[:i]; !strings.HasPrefix(prefixOf, strings.TrimSuffix(kept, "\n")) || len(kept) < limit/10 {
		t.Errorf("%s: kept %d bytes that are not the output's beginning: %q...", name, len(kept), kept[:min(len(kept), 100)])
	}
}

func TestExecuteOutputTruncated(t *testing.T) {
	const limit = 1000
	_, ts, _ := newTestServer(t, func(s *Server) { s.streamLimit = limit })
	// stdout: plain text; stderr: NUL bytes and invalid UTF-8, which
	// take six bytes each in JSON.
	res := execute(t, ts.URL, `sh -c 'yes 0123456789 | head -c 5000; head -c 3000 /dev/zero | tr "\000" "\377" >&2; exit 4'`)
	if res.ExitCode != 4 {
		t.Errorf("exit code %d, want 4", res.ExitCode)
	}
	checkTruncated(t, "stdout", res.Stdout, strings.Repeat("0123456789\n", 500), limit)
	checkTruncated(t, "stderr", res.Stderr, strings.Repeat("\uFFFD", 3000), limit)
	if !strings.Contains(res.Stdout, "wrote 5000 bytes") || !strings.Contains(res.Stderr, "wrote 3000 bytes") {
		t.Errorf("the markers do not say how much was written: %q / %q", res.Stdout[len(res.Stdout)-150:], res.Stderr[len(res.Stderr)-150:])
	}

	// Output exactly at the limit is not cut.
	res = execute(t, ts.URL, fmt.Sprintf(`sh -c 'head -c %d /dev/zero | tr "\000" x'`, limit))
	if res.Stdout != strings.Repeat("x", limit) {
		t.Errorf("%d bytes of output came back as %q", limit, res.Stdout)
	}
}

// With the real limits, our client (internal/runtime, 64 MiB responses) gets
// a truncated answer where it would otherwise have refused the response.
func TestExecuteHugeOutputFitsTheClient(t *testing.T) {
	if testing.Short() {
		t.Skip("produces 2x31 MiB of output")
	}
	_, ts, _ := newTestServer(t, nil)
	c := &runtime.Client{BaseURL: func() string { return ts.URL }}
	const size = maxStreamJSON + 1<<20
	res, err := c.Execute(context.Background(), runtime.Target{SandboxID: "sbx"},
		fmt.Sprintf(`sh -c 'head -c %d /dev/zero | tr "\000" x; head -c %d /dev/zero | tr "\000" y >&2'`, size, size))
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	checkTruncated(t, "stdout", res.Stdout, strings.Repeat("x", size), maxStreamJSON)
	checkTruncated(t, "stderr", res.Stderr, strings.Repeat("y", size), maxStreamJSON)
	if res.ExitCode != 0 {
		t.Errorf("exit code %d", res.ExitCode)
	}
}

// A page that rebinds its own domain to the server's address sends that
// domain as Host; the router sends the pod IP, a port-forward localhost.
func TestHostHeader(t *testing.T) {
	_, ts, _ := newTestServer(t, nil)
	for host, want := range map[string]int{
		"10.244.0.5:8888":                    http.StatusOK,
		"127.0.0.1":                          http.StatusOK,
		"[::1]:8888":                         http.StatusOK,
		"localhost:8888":                     http.StatusOK,
		"LOCALHOST.":                         http.StatusOK,
		"sandbox-abc":                        http.StatusOK,
		"sbx.default.svc":                    http.StatusOK,
		"sbx.default.svc.cluster.local:8888": http.StatusOK,
		"evil.example.com":                   http.StatusMisdirectedRequest,
		"127.0.0.1.nip.io:8888":              http.StatusMisdirectedRequest,
		"localhost.evil.com":                 http.StatusMisdirectedRequest,
		"svc.evil.com":                       http.StatusMisdirectedRequest,
	} {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/execute", strings.NewReader(`{"command": "true"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %q: got %d %s, want %d", host, resp.StatusCode, body, want)
		}
		if want != http.StatusOK && !strings.Contains(string(body), `"detail":"Host \"`+host) {
			t.Errorf("Host %q: body %s does not name the host", host, body)
		}
	}
}
