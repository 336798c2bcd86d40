package connect

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// TestWaitRouter returns once /healthz answers below 500, and with ctx's
// end otherwise, saying what it last saw.
func TestWaitRouter(t *testing.T) {
	var asked, failFirst atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Check(t, is.Equal(r.URL.Path, "/healthz"))
		if asked.Add(1) <= failFirst.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	conn, err := Direct(srv.URL)
	assert.NilError(t, err)

	failFirst.Store(2)
	assert.NilError(t, WaitRouter(context.Background(), conn))
	assert.Check(t, is.Equal(asked.Load(), int32(3)))

	asked.Store(0)
	failFirst.Store(1 << 30)
	// Deadlines of a second or more: on a loaded machine (CI runs the
	// packages side by side) 200 ms once passed before the first dial.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = WaitRouter(ctx, conn)
	assert.Check(t, is.ErrorContains(err, "GET /healthz: 503"))
	assert.Check(t, is.ErrorIs(err, context.DeadlineExceeded))

	srv.Close() // nothing listens: the dial error is what it saw
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	assert.Check(t, is.ErrorContains(WaitRouter(ctx, conn), "refused"))
}
