package connect

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"k8s.io/client-go/rest"
)

// countOpens replaces openShared for the test, counting (and optionally
// failing) the connections it opens.
func countOpens(t *testing.T, fail func(n int64) error) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	orig := openShared
	openShared = func(ctx context.Context, cfg *rest.Config, o AutoOptions, c Choice, tgt Target) (Conn, error) {
		k := n.Add(1)
		if fail != nil {
			if err := fail(k); err != nil {
				return nil, err
			}
		}
		return orig(ctx, cfg, o, c, tgt)
	}
	t.Cleanup(func() {
		openShared = orig
		assert.Check(t, CloseShared())
	})
	return &n
}

func TestSharedGivesConcurrentCallersOneTunnel(t *testing.T) {
	tc := cluster(t)
	opens := countOpens(t, nil)
	o := AutoOptions{Env: env{}.get, Tunnel: TunnelOptions{Log: t.Logf}}

	const callers = 10
	conns := make([]Conn, callers)
	choices := make([]Choice, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { conns[i], choices[i], errs[i] = Shared(context.Background(), tc.cfg, o) })
	}
	wg.Wait()
	for i := range callers {
		assert.NilError(t, errs[i])
		assert.Check(t, conns[i] == conns[0], "caller %d got another Conn: %s", i, conns[i].Describe())
		assert.Check(t, is.Equal(choices[i].Mode, ModeTunnel))
	}
	assert.Check(t, is.Equal(opens.Load(), int64(1)), "tunnels opened")
	t.Logf("%d callers share: %s", callers, conns[0].Describe())
	assert.Check(t, is.Contains(conns[0].Describe(), "(shared by the process)"))

	// Close on a shared Conn leaves it open for the others.
	assert.NilError(t, conns[3].Close())
	code, _, err := get(conns[0].URL(), "/healthz")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(code, http.StatusOK))

	// A later caller gets it too, without opening another.
	again, _, err := Shared(context.Background(), tc.cfg, o)
	assert.NilError(t, err)
	assert.Check(t, again == conns[0])
	assert.Check(t, is.Equal(opens.Load(), int64(1)))

	// CloseShared really closes it; the next call opens a new one.
	url := conns[0].URL()
	assert.NilError(t, CloseShared())
	_, _, err = get(url, "/healthz")
	assert.Check(t, err != nil, "the shared tunnel still forwards after CloseShared")
	fresh, _, err := Shared(context.Background(), tc.cfg, o)
	assert.NilError(t, err)
	assert.Check(t, fresh != conns[0])
	assert.Check(t, is.Equal(opens.Load(), int64(2)))
}

func TestSharedRetriesAFailedOpening(t *testing.T) {
	opens := countOpens(t, func(n int64) error {
		if n == 1 {
			return errors.New("first opening fails")
		}
		return nil
	})
	cfg := &rest.Config{Host: "https://api.example:6443"}
	o := AutoOptions{Env: env{"SANDBOXTEST_API_URL": "http://router.example:8080"}.get}

	_, c, err := Shared(context.Background(), cfg, o)
	assert.Check(t, is.Error(err, "first opening fails (mode direct chosen because SANDBOXTEST_API_URL=http://router.example:8080 is set)"))
	assert.Check(t, is.Equal(c.Mode, ModeDirect))

	first, _, err := Shared(context.Background(), cfg, o)
	assert.NilError(t, err)
	second, _, err := Shared(context.Background(), cfg, o)
	assert.NilError(t, err)
	assert.Check(t, first == second)
	assert.Check(t, is.Equal(opens.Load(), int64(2)))
	assert.Check(t, is.Equal(first.URL(), "http://router.example:8080"))

	// Another target, or another API server, is another connection.
	other, _, err := Shared(context.Background(), cfg, AutoOptions{Env: env{"SANDBOXTEST_API_URL": "http://other.example"}.get})
	assert.NilError(t, err)
	assert.Check(t, other != first)
	elsewhere, _, err := Shared(context.Background(), &rest.Config{Host: "https://other-api:6443"}, o)
	assert.NilError(t, err)
	assert.Check(t, elsewhere != first)
	assert.Check(t, is.Equal(opens.Load(), int64(4)))

	// Choose errors are returned as they are, and nothing is opened.
	_, _, err = Shared(context.Background(), cfg, AutoOptions{Env: env{"SANDBOXTEST_MODE": "nope"}.get})
	assert.Check(t, is.ErrorContains(err, `SANDBOXTEST_MODE="nope" is not a mode`))
	assert.Check(t, is.Equal(opens.Load(), int64(4)))
}
