package runtime

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ErrInvalidPath is wrapped by every error CleanPath returns, so callers can
// tell a refused path (nothing was sent) from a failed request.
var ErrInvalidPath = errors.New("invalid sandbox path")

// CleanPath confines p to the sandbox root on the client side, before any
// request is sent, and returns the path that will be sent.
//
// Paths are relative to the sandbox root (/app in the python runtime). As the
// runtime itself does, leading slashes are stripped, so "/a/b" and "a/b" name
// the same file; "", "/" and "." name the root. The result is cleaned
// lexically (path.Clean: "a//b/./c" → "a/b/c", "a/../b" → "b").
//
// It refuses, with an error naming the path and the reason:
//   - a path that climbs above the root with ".." ("../x", "a/../../x");
//   - a path containing a NUL byte.
//
// The check is lexical: the runtime still resolves symbolic links and
// refuses (403) anything that really lands outside the root. A caveat of the
// lexical cleaning: "link/../x" becomes "x", whereas the runtime, following
// the link first, would have looked beside the link's target.
func CleanPath(p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("%w %q: it contains a NUL byte", ErrInvalidPath, p)
	}
	rel := strings.TrimLeft(p, "/")
	if rel == "" {
		return ".", nil
	}
	clean := path.Clean(rel)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%w %q: it escapes the sandbox root (cleaned, it is %q); "+
			"give a path inside the root, relative to it (a leading \"/\" also means the root)",
			ErrInvalidPath, p, clean)
	}
	return clean, nil
}

const upperHex = "0123456789ABCDEF"

// encodePath percent-encodes every byte of p outside the RFC 3986 unreserved
// set (A-Za-z0-9 - _ . ~), '/' included, as upstream's Go client does, so a
// file path is always one path segment of the request URL. "." and ".." are
// encoded too, so that no URL normalisation can treat them as dot segments.
func encodePath(p string) string {
	switch p {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0x0f])
	}
	return b.String()
}
