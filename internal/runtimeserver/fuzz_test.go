package runtimeserver

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzRoot is a root with symlinks pointing inside, upward and outside, and
// a secret beside it that no request may reach.
func fuzzRoot(f *testing.F) (s *Server, base, secret string) {
	dir := f.TempDir()
	root := filepath.Join(dir, "root")
	secret = "SECRET-OUTSIDE-THE-ROOT"
	for _, d := range []string{root + "/sub/deep", dir + "/outside"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	for file, content := range map[string]string{
		dir + "/outside/secret": secret,
		dir + "/secret":         secret,
		root + "/inside.txt":    "inside",
		root + "/sub/deep/f":    "deep",
	} {
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		root + "/in":        "sub/deep",
		root + "/up":        "..",
		root + "/out":       dir + "/outside",
		root + "/sub/rel":   "../../outside",
		root + "/sub/back":  "../sub",
		root + "/loop":      "loop",
		root + "/dangling":  "../outside/new",
		root + "/sub/abs":   "/",
		root + "/sub/rootx": root + "/../secret",
	} {
		if err := os.Symlink(target, link); err != nil {
			f.Fatal(err)
		}
	}
	base, err := filepath.EvalSymlinks(root)
	if err != nil {
		f.Fatal(err)
	}
	return &Server{Root: root}, base, secret
}

func inside(base, p string) bool {
	return p == base || strings.HasPrefix(p, base+"/")
}

// FuzzWithin: whatever the path, the resolved location of an accepted path
// is inside the root, both as within computes it and as the kernel sees it.
func FuzzWithin(f *testing.F) {
	s, base, _ := fuzzRoot(f)
	for _, p := range []string{"", "/", ".", "..", "inside.txt", "/sub/deep/f", "../secret", "a/../../secret",
		"in/f", "in/../../secret", "up/secret", "out/secret", "sub/rel/secret", "sub/back/deep", "loop",
		"dangling", "sub/abs/etc/passwd", "sub/rootx", "in/../../../root/inside.txt", "//../x", "sub/./../..", "%2e%2e/secret"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		called := false
		ok, _ := s.within(p, func(root *os.Root, rel string) error {
			called = true
			if rel != "." && !filepath.IsLocal(rel) {
				t.Fatalf("within(%q) gave rel %q, which is not local", p, rel)
			}
			full, err := realpath(base + "/" + rel)
			if err != nil || !inside(base, full) {
				t.Fatalf("within(%q) gave rel %q, which resolves to %q (%v), outside %q", p, rel, full, err, base)
			}
			if real, err := filepath.EvalSymlinks(filepath.Join(base, rel)); err == nil && !inside(base, real) {
				t.Fatalf("within(%q) gave rel %q, which the kernel resolves to %q, outside %q", p, rel, real, base)
			}
			return nil
		})
		if ok != called {
			t.Fatalf("within(%q): ok=%v but fn called=%v", p, ok, called)
		}
	})
}

// FuzzReadRoutes: no request to the read routes returns the secret that
// lies outside the root, however its path is written or encoded.
func FuzzReadRoutes(f *testing.F) {
	s, _, secret := fuzzRoot(f)
	h := s.Handler()
	for _, p := range []string{"inside.txt", "..%2Fsecret", "%2E%2E%2Fsecret", "out%2Fsecret", "up/secret", "sub%2Frel%2Fsecret",
		"sub%2Frootx", "sub%2Fabs%2F", "in%2F..%2F..%2F..%2Fsecret", "%252e%252e%252fsecret", "%2F..%2F..%2Fsecret"} {
		f.Add("download", p)
		f.Add("list", p)
		f.Add("exists", p)
	}
	f.Fuzz(func(t *testing.T, route, p string) {
		u, err := url.Parse("http://127.0.0.1/" + route + "/" + p)
		if err != nil {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL = u
		req.RequestURI = u.RequestURI()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if body := rec.Body.String(); strings.Contains(body, secret) || strings.Contains(body, `"name":"secret"`) || strings.Contains(body, `"name":"outside"`) {
			t.Fatalf("GET %s answered %d with what lies outside the root: %s", u.RequestURI(), rec.Code, body)
		}
	})
}
