package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"time"
)

// File types in FileEntry.Type.
const (
	TypeFile      = "file"
	TypeDirectory = "directory"
)

// FileEntry is one entry of a directory listing. Its JSON form is the
// runtime's: {"name","size","type","mod_time"} with mod_time in float
// seconds since the Unix epoch.
type FileEntry struct {
	Name    string
	Size    int64
	Type    string // TypeFile or TypeDirectory (a symlink is described by its target)
	ModTime time.Time
}

type fileEntryJSON struct {
	Name    string  `json:"name"`
	Size    int64   `json:"size"`
	Type    string  `json:"type"`
	ModTime float64 `json:"mod_time"`
}

// UnmarshalJSON reads the runtime's form.
func (e *FileEntry) UnmarshalJSON(b []byte) error {
	var j fileEntryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	sec, frac := math.Modf(j.ModTime)
	*e = FileEntry{
		Name:    j.Name,
		Size:    j.Size,
		Type:    j.Type,
		ModTime: time.Unix(int64(sec), int64(math.Round(frac*1e9))),
	}
	return nil
}

// MarshalJSON writes the runtime's form.
func (e FileEntry) MarshalJSON() ([]byte, error) {
	var mod float64
	if !e.ModTime.IsZero() {
		mod = float64(e.ModTime.Unix()) + float64(e.ModTime.Nanosecond())/1e9
	}
	return json.Marshal(fileEntryJSON{Name: e.Name, Size: e.Size, Type: e.Type, ModTime: mod})
}

// Upload writes data to path in the sandbox, creating or truncating the
// file. The path goes through CleanPath and is sent, relative to the root,
// as the filename of the multipart field "file". The python runtime does
// not create parent directories: create them first (Execute "mkdir -p
// dir"), or the runtime answers 500. A path with a control character
// cannot be carried in a multipart header and is refused, as is the root.
func (c *Client) Upload(ctx context.Context, t Target, path string, data []byte, opts ...CallOption) error {
	o := collectOptions(opts)
	ctx, cancel := o.withCallTimeout(ctx)
	defer cancel()
	op := fmt.Sprintf("upload %q to sandbox %s", path, t)
	rel, err := CleanPath(path)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if rel == "." {
		return fmt.Errorf("%s: %w %q: it names the sandbox root, not a file", op, ErrInvalidPath, path)
	}
	for _, r := range rel {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s: %w %q: a control character cannot be sent as a multipart filename", op, ErrInvalidPath, path)
		}
	}
	var buf bytes.Buffer
	buf.Grow(len(data) + 512)
	mw := multipart.NewWriter(&buf)
	part, err := mw.CreateFormFile("file", rel)
	if err == nil {
		_, err = part.Write(data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return fmt.Errorf("%s: building the multipart body: %w", op, err)
	}
	return c.do(ctx, t, request{
		op:          op,
		method:      http.MethodPost,
		endpoint:    "upload",
		body:        buf.Bytes(),
		contentType: mw.FormDataContentType(),
		attempts:    o.attempts(c.Retry.attempts()),
	}, func(_ *http.Response, body io.Reader) error {
		// The runtime's {"message": ...} is not needed; reading it to the
		// end lets the connection be reused.
		_, err := io.Copy(io.Discard, body)
		return err
	})
}

// Download returns the content of the file at path (see CleanPath). If it
// does not exist or is not a regular file the error matches ErrNotFound.
func (c *Client) Download(ctx context.Context, t Target, path string, opts ...CallOption) ([]byte, error) {
	o := collectOptions(opts)
	ctx, cancel := o.withCallTimeout(ctx)
	defer cancel()
	op := fmt.Sprintf("download %q from sandbox %s", path, t)
	rel, err := CleanPath(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var data []byte
	err = c.do(ctx, t, request{
		op:       op,
		method:   http.MethodGet,
		endpoint: "download/" + encodePath(rel),
		attempts: o.attempts(c.Retry.attempts()),
		notFound: true,
	}, func(resp *http.Response, body io.Reader) error {
		var b bytes.Buffer
		if resp.ContentLength > 0 {
			b.Grow(int(resp.ContentLength))
		}
		_, err := b.ReadFrom(body)
		data = b.Bytes()
		return err
	})
	if err != nil {
		return nil, err
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// List returns the entries of the directory at path (see CleanPath; "" or
// "." is the root), sorted as the runtime sends them. If path is not a
// directory the error matches ErrNotFound.
func (c *Client) List(ctx context.Context, t Target, path string, opts ...CallOption) ([]FileEntry, error) {
	o := collectOptions(opts)
	ctx, cancel := o.withCallTimeout(ctx)
	defer cancel()
	op := fmt.Sprintf("list %q in sandbox %s", path, t)
	rel, err := CleanPath(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var entries []FileEntry
	err = c.do(ctx, t, request{
		op:       op,
		method:   http.MethodGet,
		endpoint: "list/" + encodePath(rel),
		attempts: o.attempts(c.Retry.attempts()),
		notFound: true,
	}, func(resp *http.Response, body io.Reader) error {
		return decodeJSON(resp, body, &entries)
	})
	if err != nil {
		return nil, err
	}
	if entries == nil {
		entries = []FileEntry{}
	}
	return entries, nil
}

// Exists reports whether a file or directory exists at path (see
// CleanPath).
func (c *Client) Exists(ctx context.Context, t Target, path string, opts ...CallOption) (bool, error) {
	o := collectOptions(opts)
	ctx, cancel := o.withCallTimeout(ctx)
	defer cancel()
	op := fmt.Sprintf("exists %q in sandbox %s", path, t)
	rel, err := CleanPath(path)
	if err != nil {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	var exists bool
	err = c.do(ctx, t, request{
		op:       op,
		method:   http.MethodGet,
		endpoint: "exists/" + encodePath(rel),
		attempts: o.attempts(c.Retry.attempts()),
	}, func(resp *http.Response, body io.Reader) error {
		var raw struct {
			Exists *bool `json:"exists"`
		}
		if err := decodeJSON(resp, body, &raw); err != nil {
			return err
		}
		if raw.Exists == nil {
			return fmt.Errorf("the response has no \"exists\" field (Content-Type %q); is the router reaching the python runtime?", resp.Header.Get("Content-Type"))
		}
		exists = *raw.Exists
		return nil
	})
	return exists, err
}
