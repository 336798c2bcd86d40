package runtime

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
)

// FuzzCleanPath checks CleanPath against its contract: a path is accepted
// exactly when, under a root, it stays inside it lexically; what is sent is
// clean, relative, stable under CleanPath and names the same place; and
// encodePath makes it one URL path segment that decodes back to it.
func FuzzCleanPath(f *testing.F) {
	for _, p := range []string{"", "/", ".", "..", "a/b", "/a/b", "a//b/./c", "a/../b", "../x", "a/../../x",
		"/../x", "//..", "a/..", "x\x00y", "...", "a/...", "%2e%2e", "é/ü ñ", "a\\..\\..\\x", "./../.."} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rel, err := CleanPath(p)
		under := path.Join("/r", p)
		staysInside := under == "/r" || strings.HasPrefix(under, "/r/")
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("CleanPath(%q): error %v does not wrap ErrInvalidPath", p, err)
			}
			if staysInside && !strings.Contains(p, "\x00") {
				t.Fatalf("CleanPath(%q) refused a path that stays inside the root (%q): %v", p, under, err)
			}
			return
		}
		if !staysInside || strings.Contains(p, "\x00") {
			t.Fatalf("CleanPath(%q) = %q, but under a root it lands at %q", p, rel, under)
		}
		if rel == "" || strings.HasPrefix(rel, "/") || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") {
			t.Fatalf("CleanPath(%q) = %q: not a clean path relative to the root", p, rel)
		}
		if path.Join("/r", rel) != under {
			t.Fatalf("CleanPath(%q) = %q names %q, the path names %q", p, rel, path.Join("/r", rel), under)
		}
		if again, err := CleanPath(rel); err != nil || again != rel {
			t.Fatalf("CleanPath(CleanPath(%q)) = %q, %v; want %q", p, again, err, rel)
		}
		e := encodePath(rel)
		if strings.ContainsAny(e, "/?#") || e == "." || e == ".." {
			t.Fatalf("encodePath(%q) = %q is not a single plain path segment", rel, e)
		}
		if back, err := url.PathUnescape(e); err != nil || back != rel {
			t.Fatalf("encodePath(%q) = %q decodes to %q, %v", rel, e, back, err)
		}
	})
}
