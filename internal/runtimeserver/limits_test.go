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
