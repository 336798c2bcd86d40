package sandboxtest

import (
	"context"
	"errors"
	"path"
	"strings"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/runtime"
	"github.com/agentsandbox/go-sandboxtest/tracing"
)

// FileEntry is one entry of a directory listing.
type FileEntry struct {
	Name    string
	Size    int64
	IsDir   bool
	ModTime time.Time
}

// WriteFile writes data to path (relative to the sandbox root), creating
// parent directories. Paths that escape the root are refused.
func (sb *Sandbox) WriteFile(p string, data []byte) {
	sb.t.Helper()
	if err := sb.WriteFileE(sb.testContext(), p, data); err != nil {
		sb.t.Fatalf("%v", err)
	}
}

// WriteFileE is WriteFile returning an error. The call timeout covers the
// creation of the parent directories and the upload together.
func (sb *Sandbox) WriteFileE(ctx context.Context, p string, data []byte, opts ...CallOption) (err error) {
	ctx, done := sb.traceOp(ctx, tracing.SpanWrite, "write", p, tracing.AttrFilePath.String(p), tracing.AttrFileSize.Int(len(data)))
	defer func() { done(len(data), err) }()
	ctx, cancel, ropts, err := sb.call(ctx, opts)
	defer cancel()
	if err != nil {
		return errorf("write %q in %s: %w", p, sb, err)
	}
	clean, err := runtime.CleanPath(p)
	if err != nil {
		return errorf("write %q in %s: %w", p, sb, err)
	}
	if dir := path.Dir(clean); dir != "." {
		// The runtime API does not create parents; mkdir through it does.
		// mkdir -p may run twice harmlessly, so it is retried.
		res, err := sb.c.runtime.Execute(ctx, sb.target(), "mkdir -p "+quoteArg(dir), append([]runtime.CallOption{runtime.WithRetries(2)}, ropts...)...)
		if err != nil {
			return errorf("write %q in %s: creating %s: %w", p, sb, dir, callError(err))
		}
		if res.ExitCode != 0 {
			return errorf("write %q in %s: mkdir -p %s exited %d: %s", p, sb, dir, res.ExitCode, strings.TrimSpace(res.Stderr))
		}
	}
	if err := sb.c.runtime.Upload(ctx, sb.target(), clean, data, ropts...); err != nil {
		return errorf("write %q in %s: %w", p, sb, callError(err))
	}
	return nil
}

// ReadFile returns the content of path.
func (sb *Sandbox) ReadFile(p string) []byte {
	sb.t.Helper()
	data, err := sb.ReadFileE(sb.testContext(), p)
	if err != nil {
		sb.t.Fatalf("%v", err)
	}
	return data
}

// ReadFileE is ReadFile returning an error; a missing file is ErrNotExist
// (fs.ErrNotExist).
func (sb *Sandbox) ReadFileE(ctx context.Context, p string, opts ...CallOption) (data []byte, err error) {
	ctx, done := sb.traceOp(ctx, tracing.SpanRead, "read", p, tracing.AttrFilePath.String(p))
	defer func() { done(len(data), err, tracing.AttrFileSize.Int(len(data))) }()
	ctx, cancel, ropts, err := sb.call(ctx, opts)
	defer cancel()
	if err != nil {
		return nil, errorf("read %q in %s: %w", p, sb, err)
	}
	clean, err := runtime.CleanPath(p)
	if err != nil {
		return nil, errorf("read %q in %s: %w", p, sb, err)
	}
	data, err = sb.c.runtime.Download(ctx, sb.target(), clean, ropts...)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil, &pathError{op: "read", path: p, sb: sb.String(), err: ErrNotExist}
	}
	if err != nil {
		return nil, errorf("read %q in %s: %w", p, sb, callError(err))
	}
	return data, nil
}

// ListDir lists the directory path.
func (sb *Sandbox) ListDir(p string) []FileEntry {
	sb.t.Helper()
	entries, err := sb.ListDirE(sb.testContext(), p)
	if err != nil {
		sb.t.Fatalf("%v", err)
	}
	return entries
}

// ListDirE is ListDir returning an error; a missing directory is
// ErrNotExist (fs.ErrNotExist).
func (sb *Sandbox) ListDirE(ctx context.Context, p string, opts ...CallOption) (entries []FileEntry, err error) {
	ctx, done := sb.traceOp(ctx, tracing.SpanList, "list", p, tracing.AttrFilePath.String(p))
	defer func() { done(len(entries), err, tracing.AttrFileCount.Int(len(entries))) }()
	ctx, cancel, ropts, err := sb.call(ctx, opts)
	defer cancel()
	if err != nil {
		return nil, errorf("list %q in %s: %w", p, sb, err)
	}
	clean, err := runtime.CleanPath(p)
	if err != nil {
		return nil, errorf("list %q in %s: %w", p, sb, err)
	}
	list, err := sb.c.runtime.List(ctx, sb.target(), clean, ropts...)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil, &pathError{op: "list", path: p, sb: sb.String(), err: ErrNotExist}
	}
	if err != nil {
		return nil, errorf("list %q in %s: %w", p, sb, callError(err))
	}
	out := make([]FileEntry, len(list))
	for i, e := range list {
		out[i] = FileEntry{Name: e.Name, Size: e.Size, IsDir: e.Type == runtime.TypeDirectory, ModTime: e.ModTime}
	}
	return out, nil
}

// Exists reports whether path exists.
func (sb *Sandbox) Exists(p string) bool {
	sb.t.Helper()
	ok, err := sb.ExistsE(sb.testContext(), p)
	if err != nil {
		sb.t.Fatalf("%v", err)
	}
	return ok
}

// ExistsE is Exists returning an error.
func (sb *Sandbox) ExistsE(ctx context.Context, p string, opts ...CallOption) (ok bool, err error) {
	ctx, done := sb.traceOp(ctx, tracing.SpanExists, "exists", p, tracing.AttrFilePath.String(p))
	defer func() {
		n := 0
		if ok {
			n = 1
		}
		done(n, err, tracing.AttrFileExists.Bool(ok))
	}()
	ctx, cancel, ropts, err := sb.call(ctx, opts)
	defer cancel()
	if err != nil {
		return false, errorf("exists %q in %s: %w", p, sb, err)
	}
	clean, err := runtime.CleanPath(p)
	if err != nil {
		return false, errorf("exists %q in %s: %w", p, sb, err)
	}
	ok, err = sb.c.runtime.Exists(ctx, sb.target(), clean, ropts...)
	if err != nil {
		return false, errorf("exists %q in %s: %w", p, sb, callError(err))
	}
	return ok, nil
}

type pathError struct {
	op, path, sb string
	err          error
}

func (e *pathError) Error() string {
	return "sandboxtest: " + e.op + " " + quote(e.path) + " in " + e.sb + ": " + e.err.Error()
}
func (e *pathError) Unwrap() error { return e.err }

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
