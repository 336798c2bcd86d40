package runtimeserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/syncbuf"
)

func newTestServer(t *testing.T, configure func(*Server)) (*Server, *httptest.Server, string) {
	t.Helper()
	root := t.TempDir()
	s := &Server{Root: root}
	if configure != nil {
		configure(s)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() { ts.Close(); s.Close() })
	return s, ts, root
}

// enc is how the upstream Go client encodes a path: every byte outside
// A-Za-z0-9-_.~ is escaped, '/' included.
func enc(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	switch b.String() {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return b.String()
}

func do(t *testing.T, ctx context.Context, method, url, contentType string, body io.Reader) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data, resp.Header
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	code, body, _ := do(t, context.Background(), http.MethodGet, url, "", nil)
	return code, body
}

func execute(t *testing.T, base, command string) execResult {
	t.Helper()
	payload, _ := json.Marshal(map[string]string{"command": command})
	code, body, _ := do(t, context.Background(), http.MethodPost, base+"/execute", "application/json", bytes.NewReader(payload))
	if code != http.StatusOK {
		t.Fatalf("execute %q: status %d: %s", command, code, body)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatalf("execute %q: %v: %s", command, err, body)
	}
	if keys := slices.Sorted(func(yield func(string) bool) {
		for k := range fields {
			if !yield(k) {
				return
			}
		}
	}); !reflect.DeepEqual(keys, []string{"exit_code", "stderr", "stdout"}) {
		t.Fatalf("execute %q: response keys %v", command, keys)
	}
	var res execResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func upload(t *testing.T, base, filename string, content []byte) (int, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	part, err := mw.CreateFormFile("file", filename)
	if err != nil {
		t.Fatal(err)
	}
	part.Write(content)
	mw.Close()
	code, body, _ := do(t, context.Background(), http.MethodPost, base+"/upload", mw.FormDataContentType(), &buf)
	return code, body
}

func wantJSON(t *testing.T, what string, body []byte, want string) {
	t.Helper()
	var got, exp any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: bad JSON %q: %v", what, body, err)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("%s: got %s, want %s", what, body, want)
	}
}

func TestHealthAndRouting(t *testing.T) {
	_, ts, _ := newTestServer(t, nil)
	code, body := get(t, ts.URL+"/")
	if code != 200 {
		t.Errorf("GET /: %d", code)
	}
	wantJSON(t, "GET /", body, `{"status":"ok","message":"Sandbox Runtime is active."}`)

	code, body = get(t, ts.URL+"/nope")
	if code != 404 {
		t.Errorf("GET /nope: %d", code)
	}
	wantJSON(t, "GET /nope", body, `{"detail":"Not Found"}`)

	code, body, hdr := do(t, context.Background(), http.MethodGet, ts.URL+"/execute", "", nil)
	if code != 405 || hdr.Get("Allow") != "POST" {
		t.Errorf("GET /execute: %d, Allow %q", code, hdr.Get("Allow"))
	}
	wantJSON(t, "GET /execute", body, `{"detail":"Method Not Allowed"}`)

	code, _, _ = do(t, context.Background(), http.MethodDelete, ts.URL+"/download/x", "", nil)
	if code != 405 {
		t.Errorf("DELETE /download/x: %d", code)
	}
}

func TestExecuteValidation(t *testing.T) {
	_, ts, _ := newTestServer(t, nil)
	for _, tc := range []struct{ body, typ string }{
		{`{}`, "missing"},
		{`{"command": 5}`, "string_type"},
		{`not json`, "json_invalid"},
		{`["echo"]`, "model_attributes_type"},
	} {
		code, body, _ := do(t, context.Background(), http.MethodPost, ts.URL+"/execute", "application/json", strings.NewReader(tc.body))
		var resp struct {
			Detail []struct {
				Type string `json:"type"`
				Loc  []any  `json:"loc"`
			} `json:"detail"`
		}
		if err := json.Unmarshal(body, &resp); code != 422 || err != nil || len(resp.Detail) != 1 || resp.Detail[0].Type != tc.typ {
			t.Errorf("body %s: got %d %s, want 422 with detail type %s", tc.body, code, body, tc.typ)
		}
	}
}

func TestExecuteEcho(t *testing.T) {
	_, ts, _ := newTestServer(t, nil)
	res := execute(t, ts.URL, `echo "hello  world" it\'s`)
	if want := (execResult{Stdout: "hello  world it's\n"}); res != want {
		t.Errorf("got %+v, want %+v", res, want)
	}
}

func TestExecuteExitCodes(t *testing.T) {
	_, ts, _ := newTestServer(t, nil)
	for _, tc := range []struct {
		command    string
		code       int
		stderrHas  []string
		stdoutWant string
	}{
		{command: "true", code: 0},
		{command: "false", code: 1},
		{command: "sh -c 'exit 7'", code: 7},
		{command: "sh -c 'kill -TERM $$'", code: -int(syscall.SIGTERM)},
		{command: "no-such-command-xyz --flag", code: 1,
			stderrHas: []string{"Failed to execute command", "No such file or directory", "no-such-command-xyz"}},
		{command: "./missing-script.sh", code: 1, stderrHas: []string{"No such file or directory", "missing-script.sh"}},
		{command: "echo 'unbalanced", code: 1, stderrHas: []string{"Failed to execute command", "No closing quotation"}},
		{command: "   ", code: 1, stderrHas: []string{"Failed to execute command"}},
	} {
		res := execute(t, ts.URL, tc.command)
		if res.ExitCode != tc.code || res.Stdout != tc.stdoutWant {
			t.Errorf("%q: got %+v, want exit %d", tc.command, res, tc.code)
		}
		for _, s := range tc.stderrHas {
			if !strings.Contains(res.Stderr, s) {
				t.Errorf("%q: stderr %q lacks %q", tc.command, res.Stderr, s)
			}
		}
	}
}

func TestExecuteStdoutStderrSeparate(t *testing.T) {
	_, ts, _ := newTestServer(t, nil)
	res := execute(t, ts.URL, `sh -c 'echo out1; echo err1 >&2; echo out2; printf "crlf\r\n" >&2; exit 3'`)
	// \r\n becomes \n, as with Python's text=True.
	if want := (execResult{Stdout: "out1\nout2\n", Stderr: "err1\ncrlf\n", ExitCode: 3}); res != want {
		t.Errorf("got %+v, want %+v", res, want)
	}
}

func TestExecuteNoShellCwdEnv(t *testing.T) {
	_, ts, root := newTestServer(t, func(s *Server) {
		s.Env = []string{"PATH=" + os.Getenv("PATH"), "GREETING=hi there"}
	})
	if res := execute(t, ts.URL, `echo $HOME; ls | cat`); res.Stdout != "$HOME; ls | cat\n" {
		t.Errorf("shell syntax was interpreted: %+v", res)
	}
	realRoot, _ := filepath.EvalSymlinks(root)
	if res := execute(t, ts.URL, "pwd"); strings.TrimSpace(res.Stdout) != realRoot {
		t.Errorf("pwd = %q, want %q", res.Stdout, realRoot)
	}
	if res := execute(t, ts.URL, `sh -c 'echo "$GREETING"; echo "${HOME:-unset}"'`); res.Stdout != "hi there\nunset\n" {
		t.Errorf("env not applied: %+v", res)
	}
	os.WriteFile(filepath.Join(root, "script.sh"), []byte("#!/bin/sh\necho from script \"$1\"\n"), 0o755)
	if res := execute(t, ts.URL, "./script.sh arg"); res.Stdout != "from script arg\n" || res.ExitCode != 0 {
		t.Errorf("relative executable: %+v", res)
	}
}

func TestExecuteLargeOutput(t *testing.T) {
	_, ts, _ := newTestServer(t, nil)
	const size = 16 << 20
	res := execute(t, ts.URL, fmt.Sprintf("sh -c 'yes 0123456789abcdef | head -c %d'", size))
	want := strings.Repeat("0123456789abcdef\n", size/17+1)[:size]
	if res.ExitCode != 0 || len(res.Stdout) != size || res.Stdout != want {
		t.Errorf("exit %d, stdout %d bytes (want %d), equal=%v, stderr %q", res.ExitCode, len(res.Stdout), size, res.Stdout == want, res.Stderr)
	}
}

// pidCommand runs two background sleeps under a shell and records the
// shell's and both children's pids in the file "pids" under the root.
const pidCommand = `sh -c 'echo $$ > pids.tmp; sleep 30 & echo $! >> pids.tmp; sleep 30 & echo $! >> pids.tmp; mv pids.tmp pids; wait'`

func waitForPids(t *testing.T, root string) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(filepath.Join(root, "pids")); err == nil {
			var pids []int
			for _, f := range strings.Fields(string(data)) {
				pid, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("bad pid file %q", data)
				}
				pids = append(pids, pid)
			}
			if len(pids) != 3 {
				t.Fatalf("pid file %q: want 3 pids", data)
			}
			// Don't leak sleeps if the test fails.
			t.Cleanup(func() {
				for _, p := range pids {
					syscall.Kill(p, syscall.SIGKILL)
				}
			})
			return pids
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("command never wrote its pids")
	return nil
}

// alive treats zombies as dead: whether the reaper has run yet is not the
// server's business.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	rest := s[strings.LastIndexByte(s, ')')+1:]
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

func assertAllDead(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var survivors []int
		for _, p := range pids {
			if alive(p) {
				survivors = append(survivors, p)
			}
		}
		if len(survivors) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes survived: %v (of %v)", survivors, pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestExecuteTimeoutKillsProcessGroup(t *testing.T) {
	_, ts, root := newTestServer(t, func(s *Server) { s.ExecTimeout = 2 * time.Second })
	start := time.Now()
	res := execute(t, ts.URL, pidCommand)
	if elapsed := time.Since(start); elapsed > 15*time.Second {
		t.Errorf("execute took %v despite a 2s timeout", elapsed)
	}
	if res.ExitCode != 1 || res.Stdout != "" || !strings.Contains(res.Stderr, "timed out") || !strings.Contains(res.Stderr, "Failed to execute command") {
		t.Errorf("got %+v, want exit 1 with a timed-out error", res)
	}
	assertAllDead(t, waitForPids(t, root))
}

func TestExecuteRequestCancelKillsProcessGroup(t *testing.T) {
	_, ts, root := newTestServer(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		payload, _ := json.Marshal(map[string]string{"command": pidCommand})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/execute", bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	pids := waitForPids(t, root)
	cancel()
	<-done
	assertAllDead(t, pids)
}

func TestCloseKillsRunningCommands(t *testing.T) {
	s, ts, root := newTestServer(t, nil)
	type result struct {
		code int
		body []byte
	}
	done := make(chan result, 1)
	go func() {
		payload, _ := json.Marshal(map[string]string{"command": pidCommand})
		resp, err := http.Post(ts.URL+"/execute", "application/json", bytes.NewReader(payload))
		if err != nil {
			done <- result{body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, body}
	}()
	pids := waitForPids(t, root)
	s.Close()
	assertAllDead(t, pids)
	select {
	case r := <-done:
		if r.code != http.StatusServiceUnavailable {
			t.Errorf("running request: got %d %s, want 503", r.code, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("running request did not return after Close")
	}
	code, body, _ := do(t, context.Background(), http.MethodPost, ts.URL+"/execute", "application/json", strings.NewReader(`{"command":"true"}`))
	if code != http.StatusServiceUnavailable {
		t.Errorf("execute after Close: %d %s, want 503", code, body)
	}
}

func TestFilesRoundTrip(t *testing.T) {
	_, ts, root := newTestServer(t, nil)
	if err := os.MkdirAll(filepath.Join(root, "a", "b c"), 0o755); err != nil {
		t.Fatal(err)
	}
	binary := make([]byte, 256*4)
	for i := range binary {
		binary[i] = byte(i)
	}
	files := map[string][]byte{
		"hello.txt":            []byte("hello\n"),
		"bin.dat":              binary,
		"héllo wörld ✓.txt":    []byte("unicode"),
		"empty":                {},
		"50%.txt":              []byte("percent"),
		"a/b c/nested.txt":     []byte("nested"),
		"/a/leading-slash.txt": []byte("slash"),
	}
	for name, content := range files {
		code, body := upload(t, ts.URL, name, content)
		if code != 200 {
			t.Fatalf("upload %q: %d %s", name, code, body)
		}
		wantJSON(t, "upload "+name, body, fmt.Sprintf(`{"message":"File '%s' uploaded successfully."}`, name))
	}
	for name, content := range files {
		onDisk, err := os.ReadFile(filepath.Join(root, strings.TrimPrefix(name, "/")))
		if err != nil || !bytes.Equal(onDisk, content) {
			t.Errorf("%q on disk: %q, %v", name, onDisk, err)
		}
		code, got, hdr := do(t, context.Background(), http.MethodGet, ts.URL+"/download/"+enc(name), "", nil)
		if code != 200 || !bytes.Equal(got, content) {
			t.Errorf("download %q: %d, %d bytes, want %d bytes", name, code, len(got), len(content))
		}
		if ct := hdr.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("download %q: Content-Type %q", name, ct)
		}
		code, body := get(t, ts.URL+"/exists/"+enc(name))
		if code != 200 {
			t.Errorf("exists %q: %d", name, code)
		}
		wantJSON(t, "exists "+name, body, fmt.Sprintf(`{"path":%q,"exists":true}`, name))
	}
	if _, _, hdr := do(t, context.Background(), http.MethodGet, ts.URL+"/download/hello.txt", "", nil); hdr.Get("Content-Disposition") != `attachment; filename="hello.txt"` {
		t.Errorf("Content-Disposition %q", hdr.Get("Content-Disposition"))
	}
	if _, _, hdr := do(t, context.Background(), http.MethodGet, ts.URL+"/download/"+enc("héllo wörld ✓.txt"), "", nil); hdr.Get("Content-Disposition") != `attachment; filename*=utf-8''h%C3%A9llo%20w%C3%B6rld%20%E2%9C%93.txt` {
		t.Errorf("Content-Disposition %q", hdr.Get("Content-Disposition"))
	}

	type entry struct {
		Name    string  `json:"name"`
		Size    int64   `json:"size"`
		Type    string  `json:"type"`
		ModTime float64 `json:"mod_time"`
	}
	list := func(p string) []entry {
		t.Helper()
		code, body := get(t, ts.URL+"/list/"+enc(p))
		if code != 200 {
			t.Fatalf("list %q: %d %s", p, code, body)
		}
		var entries []entry
		if err := json.Unmarshal(body, &entries); err != nil || entries == nil {
			t.Fatalf("list %q: %s: %v", p, body, err)
		}
		return entries
	}
	byName := map[string]entry{}
	for _, e := range list(".") {
		byName[e.Name] = e
	}
	for name, want := range map[string]entry{
		"hello.txt":         {Size: 6, Type: "file"},
		"bin.dat":           {Size: 1024, Type: "file"},
		"héllo wörld ✓.txt": {Size: 7, Type: "file"},
		"empty":             {Size: 0, Type: "file"},
		"a":                 {Type: "directory"},
	} {
		got, ok := byName[name]
		if !ok || got.Type != want.Type || (want.Type == "file" && got.Size != want.Size) {
			t.Errorf("list entry %q: got %+v (present %v), want %+v", name, got, ok, want)
		}
		if now := float64(time.Now().Unix()); got.ModTime < now-3600 || got.ModTime > now+60 {
			t.Errorf("list entry %q: mod_time %v", name, got.ModTime)
		}
	}
	if got := list("a"); len(got) != 2 || got[0].Name != "b c" || got[0].Type != "directory" || got[1].Name != "leading-slash.txt" {
		t.Errorf("list a: %+v", got)
	}
	if got := list("/a/b c/"); len(got) != 1 || got[0].Name != "nested.txt" || got[0].Size != 6 {
		t.Errorf("list a/b c: %+v", got)
	}
	os.Mkdir(filepath.Join(root, "void"), 0o755)
	if code, body := get(t, ts.URL+"/list/void"); code != 200 || string(body) != "[]" {
		t.Errorf("list empty dir: %d %s", code, body)
	}
}

func TestFilesMissing(t *testing.T) {
	_, ts, root := newTestServer(t, nil)
	os.Mkdir(filepath.Join(root, "dir"), 0o755)
	os.WriteFile(filepath.Join(root, "file"), []byte("x"), 0o644)

	code, body := get(t, ts.URL+"/download/"+enc("nope.txt"))
	if code != 404 {
		t.Errorf("download missing: %d", code)
	}
	wantJSON(t, "download missing", body, `{"message":"File not found"}`)
	if code, _ := get(t, ts.URL+"/download/dir"); code != 404 {
		t.Errorf("download directory: %d", code)
	}
	code, body = get(t, ts.URL+"/list/file")
	if code != 404 {
		t.Errorf("list file: %d", code)
	}
	wantJSON(t, "list file", body, `{"message":"Path is not a directory"}`)
	if code, _ := get(t, ts.URL+"/list/nope"); code != 404 {
		t.Errorf("list missing: %d", code)
	}
	code, body = get(t, ts.URL+"/exists/"+enc("no/such file"))
	if code != 200 {
		t.Errorf("exists missing: %d", code)
	}
	wantJSON(t, "exists missing", body, `{"path":"no/such file","exists":false}`)

	// Upstream does not create parent directories.
	code, body = upload(t, ts.URL, "newdir/x.txt", []byte("x"))
	if code != 500 || !strings.Contains(string(body), "File upload failed") {
		t.Errorf("upload into missing dir: %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(root, "newdir")); err == nil {
		t.Error("upload created a parent directory")
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("other", "x")
	mw.Close()
	code, body, _ = do(t, context.Background(), http.MethodPost, ts.URL+"/upload", mw.FormDataContentType(), &buf)
	if code != 422 {
		t.Errorf("upload without a file field: %d %s", code, body)
	}
}

func TestPathEscapes(t *testing.T) {
	_, ts, root := newTestServer(t, nil)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
	os.Mkdir(filepath.Join(root, "sub"), 0o755)
	for link, target := range map[string]string{
		"out":          outside,
		"out-rel":      "../" + filepath.Base(outside),
		"sub/up":       "../..",
		"dangling":     filepath.Join(outside, "created-through-link"),
		"in":           "sub",
		"loop":         "loop",
		"sub/back-out": "../out",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	// Make "out-rel" resolve to outside, whatever TempDir chose.
	os.Remove(filepath.Join(root, "out-rel"))
	rel, _ := filepath.Rel(root, outside)
	os.Symlink(rel, filepath.Join(root, "out-rel"))

	escapes := []string{
		"../../etc/passwd",
		"..",
		"/../../etc/passwd",
		"//..//..//etc/passwd",
		"sub/../../etc/passwd",
		"out",
		"out/secret",
		"out-rel/secret",
		"sub/up",
		"sub/up/etc/passwd",
		"sub/back-out/secret",
		"dangling",
		"in/../out/secret",
		"loop",
	}
	for _, p := range escapes {
		for _, op := range []string{"download", "list", "exists"} {
			code, body := get(t, ts.URL+"/"+op+"/"+enc(p))
			if code != 403 {
				t.Errorf("%s %q: got %d %s, want 403", op, p, code, body)
				continue
			}
			wantJSON(t, op+" "+p, body, `{"message":"Access denied"}`)
		}
		code, body := upload(t, ts.URL, p, []byte("pwned"))
		if code != 403 {
			t.Errorf("upload %q: got %d %s, want 403", p, code, body)
		}
	}
	// The same escapes sent without percent-encoding.
	for _, raw := range []string{"/download/../../etc/passwd", "/list/..", "/exists/sub/../../x", "/download/out/secret"} {
		if code, body := get(t, ts.URL+raw); code != 403 {
			t.Errorf("raw %s: got %d %s, want 403", raw, code, body)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("files appeared outside the root: %v", entries)
	}
	if got, _ := os.ReadFile(filepath.Join(outside, "secret")); string(got) != "secret" {
		t.Errorf("outside file modified: %q", got)
	}

	// Absolute-looking paths are taken relative to the root, as upstream.
	code, body := get(t, ts.URL+"/download/"+enc("/etc/passwd"))
	if code != 404 {
		t.Errorf("download /etc/passwd: got %d %s, want 404 (confined to root)", code, body)
	}
	code, body = get(t, ts.URL+"/exists/"+enc("/etc/passwd"))
	wantJSON(t, "exists /etc/passwd", body, `{"path":"/etc/passwd","exists":false}`)
	// Symlinks and dot-dots that stay inside the root are fine.
	os.WriteFile(filepath.Join(root, "sub", "f"), []byte("inside"), 0o644)
	for _, p := range []string{"in/f", "sub/../sub/f", "sub/up/" + filepath.Base(root) + "/sub/f"} {
		if code, body := get(t, ts.URL+"/download/"+enc(p)); code != 200 || string(body) != "inside" {
			t.Errorf("download %q: %d %s", p, code, body)
		}
	}
	if code, body := upload(t, ts.URL, "in/g", []byte("via link")); code != 200 {
		t.Errorf("upload through inside link: %d %s", code, body)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "sub", "g")); string(got) != "via link" {
		t.Errorf("upload through inside link wrote %q", got)
	}
}

func TestAccessLog(t *testing.T) {
	var log syncbuf.Buffer
	_, ts, _ := newTestServer(t, func(s *Server) { s.Log = &log })
	get(t, ts.URL+"/exists/x")
	get(t, ts.URL+"/nope")
	ts.Close() // waits for handlers, so both lines are written
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"GET /exists/x HTTP/1.1" 200 OK`) || !strings.Contains(lines[1], `"GET /nope HTTP/1.1" 404 Not Found`) {
		t.Errorf("access log:\n%s", log.String())
	}
}
