package connect

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"k8s.io/client-go/rest"
)

// The process-wide connections of Shared, by API server host and target.
var shared = struct {
	mu    sync.Mutex
	conns map[string]*sharedEntry
}{conns: map[string]*sharedEntry{}}

type sharedEntry struct {
	mu   sync.Mutex // held while the connection is being opened
	conn *sharedConn
}

// openShared opens a connection for Shared; tests replace it to count calls.
var openShared = open

// Shared is [Auto] with one connection per (API server host, chosen target)
// for the whole process: concurrent and later callers get the same Conn, so
// all the sandboxes of a test binary share one tunnel. The connection is
// opened once; if opening fails, the error is returned and the next call
// tries again.
//
// ctx bounds the opening only. Close on a shared Conn does nothing, since
// other callers use it; [CloseShared] closes them all (from TestMain, after
// m.Run). A shared tunnel's TunnelOptions.Log must outlive single tests.
func Shared(ctx context.Context, cfg *rest.Config, o AutoOptions) (Conn, Choice, error) {
	c, t, err := Choose(ctx, cfg, o)
	if err != nil {
		return nil, c, err
	}
	host := ""
	if cfg != nil {
		host = cfg.Host
	}
	key := host + " " + t.key(c.Mode)

	shared.mu.Lock()
	e := shared.conns[key]
	if e == nil {
		e = &sharedEntry{}
		shared.conns[key] = e
	}
	shared.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil {
		return e.conn, c, nil
	}
	conn, err := openShared(ctx, cfg, o, c, t)
	if err != nil {
		return nil, c, fmt.Errorf("%w (mode %s chosen because %s)", err, c.Mode, c.Reason)
	}
	e.conn = &sharedConn{Conn: conn}
	return e.conn, c, nil
}

// CloseShared closes every connection Shared opened and forgets them; the
// next Shared call opens anew.
func CloseShared() error {
	shared.mu.Lock()
	entries := shared.conns
	shared.conns = map[string]*sharedEntry{}
	shared.mu.Unlock()
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		e := entries[k]
		e.mu.Lock()
		if e.conn != nil {
			errs = append(errs, e.conn.Conn.Close())
		}
		e.mu.Unlock()
	}
	return errors.Join(errs...)
}

// sharedConn is a process-wide connection; its Close is a no-op.
type sharedConn struct{ Conn }

func (s *sharedConn) Describe() string { return s.Conn.Describe() + " (shared by the process)" }

// Close does nothing: the connection is shared; see CloseShared.
func (s *sharedConn) Close() error { return nil }
