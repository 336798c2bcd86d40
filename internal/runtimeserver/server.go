// Package runtimeserver is a Go re-implementation of the HTTP API served by
// agent-sandbox's python runtime (examples/python-runtime-sandbox/main.py),
// for the local node's sandboxes: it runs inside the pod as its main process
// (podinit's runtime server role), rooted at /app. Status codes and JSON
// shapes follow upstream so that the upstream Go client works unchanged.
package runtimeserver

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
)

// DefaultExecTimeout is upstream's SANDBOX_EXEC_TIMEOUT_SECONDS default.
const DefaultExecTimeout = 300 * time.Second

// Request body limits. Upstream accepts any size; these bound what a caller
// can make the server hold.
const (
	// maxExecuteBody is far above what a command line can be (Linux's
	// ARG_MAX is 2 MiB with the default stack limit), JSON escaping included.
	maxExecuteBody = 8 << 20
	// maxUploadBody is the upstream Go SDK's MaxUploadSize (256 MB) plus
	// room for the multipart framing around the file.
	maxUploadBody = 256<<20 + 1<<20
)

// Server serves the runtime API. The zero value is not usable: Root must be
// set. A Server must not be copied after first use.
type Server struct {
	Root        string        // sandbox root; every path is confined to it (like /app upstream)
	ExecTimeout time.Duration // default 300s (upstream SANDBOX_EXEC_TIMEOUT_SECONDS)
	Env         []string      // environment for executed commands (nil: os.Environ())
	Log         io.Writer     // access log, one line per request (nil: discard)

	// Tests lower these; 0 means maxStreamJSON and maxUploadBody.
	streamLimit int
	uploadLimit int64

	mu      sync.Mutex
	closed  bool
	running map[int]struct{} // process group ids of running commands
	logMu   sync.Mutex
}

// Handler returns the HTTP handler for the runtime API.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		if internalHost(r.Host) {
			s.route(rec, r)
		} else {
			writeJSON(rec, http.StatusMisdirectedRequest, detail(fmt.Sprintf(
				"Host %q is not served here: use the pod's IP address, localhost or a cluster-internal name", r.Host)))
		}
		s.logRequest(r, rec.status)
	})
}

// internalHost reports whether a Host header is one the server answers to:
// an IP address (the router sends the pod's), a single-label name, or a name
// under a suffix nobody can register in public DNS (localhost, svc,
// cluster.local, internal, test). A web page that rebinds its own domain to
// the server's address still sends its domain, and is refused.
func internalHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if _, err := netip.ParseAddr(host); err == nil || !strings.Contains(host, ".") {
		return true // an empty Host (HTTP/1.0) too: browsers always send one
	}
	for _, suffix := range []string{".localhost", ".svc", ".cluster.local", ".internal", ".test"} {
		if strings.HasSuffix(host, suffix) {
			return true
		}
	}
	return false
}

// route dispatches on the escaped path so that an encoded '/' (%2F) inside a
// file path can never be mistaken for a route separator, and so that no
// path cleaning or redirect happens before confinement is checked.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	switch p {
	case "/":
		if allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "message": "Sandbox Runtime is active."})
		}
		return
	case "/execute":
		if allow(w, r, http.MethodPost) && accept(w, r, "application/json", maxExecuteBody) {
			s.handleExecute(w, r)
		}
		return
	case "/upload":
		if allow(w, r, http.MethodPost) && accept(w, r, "multipart/form-data", cmp.Or(s.uploadLimit, maxUploadBody)) {
			s.handleUpload(w, r)
		}
		return
	}
	// The remaining routes read no body.
	r.Body = http.MaxBytesReader(w, r.Body, 0)
	for _, rt := range []struct {
		prefix string
		handle func(http.ResponseWriter, *http.Request, string)
	}{
		{"/download/", s.handleDownload},
		{"/list/", s.handleList},
		{"/exists/", s.handleExists},
	} {
		rest, ok := strings.CutPrefix(p, rt.prefix)
		if !ok {
			continue
		}
		if !allow(w, r, http.MethodGet) {
			return
		}
		// Upstream unquotes a second time after the ASGI server already
		// decoded the path; decoding once keeps names containing '%' intact.
		path, err := url.PathUnescape(rest)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, detail("Invalid path encoding"))
			return
		}
		rt.handle(w, r, path)
		return
	}
	writeJSON(w, http.StatusNotFound, detail("Not Found"))
}

// allow answers 405 the way Starlette does when the route exists but the
// method does not; GET routes also take HEAD, as in Starlette.
func allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	if method == http.MethodGet {
		w.Header().Set("Allow", "GET, HEAD")
	} else {
		w.Header().Set("Allow", method)
	}
	writeJSON(w, http.StatusMethodNotAllowed, detail("Method Not Allowed"))
	return false
}

// accept checks the media type of a POST and bounds its body. Requiring
// application/json on /execute keeps web pages out: a browser sends a
// cross-origin POST without asking the server first only for text/plain,
// urlencoded or multipart bodies. It answers 415 or 413 and returns false
// when the request is refused.
func accept(w http.ResponseWriter, r *http.Request, mediaType string, limit int64) bool {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != mediaType {
		writeJSON(w, http.StatusUnsupportedMediaType, detail(fmt.Sprintf(
			"Unsupported Content-Type %q: %s takes %s", ct, r.URL.EscapedPath(), mediaType)))
		return false
	}
	if r.ContentLength > limit {
		tooLarge(w, r, limit)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	return true
}

func tooLarge(w http.ResponseWriter, r *http.Request, limit int64) {
	writeJSON(w, http.StatusRequestEntityTooLarge, detail(fmt.Sprintf(
		"Request body too large: %s takes at most %d bytes", r.URL.EscapedPath(), limit)))
}

func (s *Server) handleExecute(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
		tooLarge(w, r, tooBig.Limit)
		return
	}
	cmd, problem := decodeExecuteRequest(raw, err)
	if problem != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{problem}})
		return
	}
	res, err := s.execute(r.Context(), cmd)
	if errors.Is(err, errClosed) {
		writeJSON(w, http.StatusServiceUnavailable, detail(err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// decodeExecuteRequest validates the body (or its read error) like
// FastAPI/pydantic would for ExecuteRequest{command: str}, returning a
// pydantic-style error on failure.
func decodeExecuteRequest(raw []byte, readErr error) (string, map[string]any) {
	var v any
	err := readErr
	if err == nil {
		err = json.Unmarshal(raw, &v)
	}
	if err != nil {
		return "", map[string]any{"type": "json_invalid", "loc": []any{"body", 0}, "msg": "JSON decode error", "input": map[string]any{}, "ctx": map[string]any{"error": err.Error()}}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return "", map[string]any{"type": "model_attributes_type", "loc": []any{"body"}, "msg": "Input should be a valid dictionary or object to extract fields from", "input": v}
	}
	c, present := obj["command"]
	if !present {
		return "", map[string]any{"type": "missing", "loc": []any{"body", "command"}, "msg": "Field required", "input": obj}
	}
	cmd, ok := c.(string)
	if !ok {
		return "", map[string]any{"type": "string_type", "loc": []any{"body", "command"}, "msg": "Input should be a valid string", "input": c}
	}
	return cmd, nil
}

func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	// Like Starlette, the whole form is received (spooled to disk past
	// 32 MB) before the target is opened, so a broken upload never
	// truncates an existing file.
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			tooLarge(w, r, tooBig.Limit)
		} else {
			writeJSON(w, http.StatusBadRequest, detail("There was an error parsing the body"))
		}
		return
	}
	defer r.MultipartForm.RemoveAll()
	files := r.MultipartForm.File["file"]
	if len(files) == 0 {
		writeJSON(w, http.StatusUnprocessableEntity, missingFile())
		return
	}
	fh := files[0]
	// mime/multipart reduces the filename to its base name; upstream uses
	// it as a path relative to the root, so take it from the raw header.
	name := fh.Filename
	if _, params, err := mime.ParseMediaType(fh.Header.Get("Content-Disposition")); err == nil && params["filename"] != "" {
		name = params["filename"]
	}
	ok, err := s.writeUpload(name, fh.Open)
	switch {
	case !ok:
		writeJSON(w, http.StatusForbidden, message("Access denied"))
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, message("File upload failed: "+err.Error()))
	default:
		writeJSON(w, http.StatusOK, message(fmt.Sprintf("File '%s' uploaded successfully.", name)))
	}
}

func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request, path string) {
	f, ok, err := s.openFile(path)
	if !ok {
		writeJSON(w, http.StatusForbidden, message("Access denied"))
		return
	}
	if err != nil {
		writeJSON(w, http.StatusNotFound, message("File not found"))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		writeJSON(w, http.StatusNotFound, message("File not found"))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", contentDisposition(path))
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

func (s *Server) handleList(w http.ResponseWriter, _ *http.Request, path string) {
	entries, ok, err := s.list(path)
	switch {
	case !ok:
		writeJSON(w, http.StatusForbidden, message("Access denied"))
	case errors.Is(err, errNotDir):
		writeJSON(w, http.StatusNotFound, message("Path is not a directory"))
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, message("List files failed: "+err.Error()))
	default:
		writeJSON(w, http.StatusOK, entries)
	}
}

func (s *Server) handleExists(w http.ResponseWriter, _ *http.Request, path string) {
	exists, ok := s.exists(path)
	if !ok {
		writeJSON(w, http.StatusForbidden, message("Access denied"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"path": path, "exists": exists})
}

// Upstream's own handlers answer {"message": ...}; only framework-level
// errors (404 route, 405, 422) use FastAPI's {"detail": ...}.
func message(m string) map[string]string { return map[string]string{"message": m} }
func detail(d string) map[string]string  { return map[string]string{"detail": d} }

func missingFile() map[string]any {
	return map[string]any{"detail": []any{map[string]any{"type": "missing", "loc": []any{"body", "file"}, "msg": "Field required", "input": nil}}}
}

// writeJSON encodes like Starlette's JSONResponse: compact, no HTML
// escaping, no trailing newline.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"detail":"Internal Server Error"}` + "\n")
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// contentDisposition mirrors Starlette's FileResponse(filename=...).
func contentDisposition(name string) string {
	if q := pyQuote(name); q != name {
		return "attachment; filename*=utf-8''" + q
	}
	return `attachment; filename="` + name + `"`
}

// pyQuote is Python's urllib.parse.quote with its default safe="/".
func pyQuote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("_.-~/", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequest writes a uvicorn-style access line.
func (s *Server) logRequest(r *http.Request, status int) {
	if s.Log == nil {
		return
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.Log, "INFO:     %s - \"%s %s HTTP/%d.%d\" %d %s\n",
		r.RemoteAddr, r.Method, r.URL.RequestURI(), r.ProtoMajor, r.ProtoMinor, status, http.StatusText(status))
}
