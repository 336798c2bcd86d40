package runtimeserver

import (
	"errors"
	"io"
	"mime/multipart"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

var errNotDir = errors.New("not a directory")

type fileEntry struct {
	Name    string  `json:"name"`
	Size    int64   `json:"size"`
	Type    string  `json:"type"`
	ModTime float64 `json:"mod_time"`
}

// within confines a client path the way upstream's get_safe_path does (strip
// leading '/', resolve symlinks, refuse anything outside the root) and runs
// fn with the resolved path relative to the root. ok is false when the path
// escapes. fn works through an os.Root so that a symlink swapped in after the
// check still cannot lead outside.
func (s *Server) within(p string, fn func(root *os.Root, rel string) error) (ok bool, err error) {
	base, err := filepath.Abs(s.Root)
	if err != nil {
		return true, err
	}
	if base, err = realpath(base); err != nil {
		return true, err
	}
	full, err := realpath(base + "/" + strings.TrimLeft(p, "/"))
	if err != nil {
		return false, nil
	}
	rel, err := filepath.Rel(base, full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return false, nil
	}
	root, err := os.OpenRoot(base)
	if err != nil {
		return true, err
	}
	defer root.Close()
	return true, fn(root, rel)
}

// realpath is Python's os.path.realpath(strict=False), which upstream relies
// on: symlinks are followed component by component (so "link/.." is the
// parent of the link's target, not of the link) and missing components are
// kept as written. Dangling symlinks are resolved too, so creating a file
// through one is checked against where it would really land.
func realpath(abs string) (string, error) {
	resolved := "/"
	rest := strings.Split(abs, "/")
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, c)
		fi, err := os.Lstat(next)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		// Cap like the kernel's ELOOP, but refuse rather than give up
		// resolving: an unresolved path cannot be checked.
		if hops++; hops > 40 {
			return "", errors.New("too many levels of symbolic links")
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			resolved = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return resolved, nil
}

// openFile opens p for reading. O_NONBLOCK keeps a FIFO from blocking the
// open; callers reject anything that is not a regular file.
func (s *Server) openFile(p string) (f *os.File, ok bool, err error) {
	ok, err = s.within(p, func(root *os.Root, rel string) error {
		f, err = root.OpenFile(rel, os.O_RDONLY|nonblock, 0)
		return err
	})
	return f, ok, err
}

func (s *Server) exists(p string) (exists, ok bool) {
	ok, err := s.within(p, func(root *os.Root, rel string) error {
		_, err := root.Stat(rel)
		return err
	})
	return ok && err == nil, ok
}

// list reports entries sorted by name. Like Python's DirEntry.stat(),
// symlinks are described by their target, but only while it stays inside the
// root; otherwise, or when dangling, by the link itself (upstream would leak
// the outside target's metadata, or fail the whole listing).
func (s *Server) list(p string) (entries []fileEntry, ok bool, err error) {
	ok, err = s.within(p, func(root *os.Root, rel string) error {
		if fi, err := root.Stat(rel); err != nil || !fi.IsDir() {
			return errNotDir
		}
		dir, err := root.Open(rel)
		if err != nil {
			return err
		}
		names, err := dir.Readdirnames(-1)
		dir.Close()
		if err != nil {
			return err
		}
		slices.Sort(names)
		entries = make([]fileEntry, 0, len(names))
		for _, name := range names {
			child := filepath.Join(rel, name)
			fi, err := root.Stat(child)
			if err != nil {
				if fi, err = root.Lstat(child); err != nil {
					continue // removed while listing
				}
			}
			typ := "file"
			if fi.IsDir() {
				typ = "directory"
			}
			entries = append(entries, fileEntry{
				Name:    name,
				Size:    fi.Size(),
				Type:    typ,
				ModTime: float64(fi.ModTime().UnixNano()) / 1e9,
			})
		}
		return nil
	})
	return entries, ok, err
}

// writeUpload creates or truncates the file; parent directories are not
// created, as upstream.
func (s *Server) writeUpload(name string, open func() (multipart.File, error)) (ok bool, err error) {
	return s.within(name, func(root *os.Root, rel string) error {
		src, err := open()
		if err != nil {
			return err
		}
		defer src.Close()
		dst, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
		if err != nil {
			return err
		}
		_, err = io.Copy(dst, src)
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		return err
	})
}
