package sandboxtest

import (
	"context"
	"errors"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	templates "github.com/agentsandbox/go-sandboxtest"
	"github.com/agentsandbox/go-sandboxtest/connect"
	"github.com/agentsandbox/go-sandboxtest/internal/deploy"
)

// TestRouterInItsOwnNamespace deploys a router into a namespace of its own
// (as upstream's manifests put it in agent-sandbox-system) and provisions a
// sandbox of another namespace through it, by option and by variable.
func TestRouterInItsOwnNamespace(t *testing.T) {
	const sandboxes, routers = "rn-sandboxes", "rn-router"
	cfg, _, err := loadRestConfig()
	assert.NilError(t, err)
	ctx := context.Background()
	rep, err := deploy.Deploy(ctx, cfg, deploy.Options{Namespace: sandboxes, RouterNamespace: routers, Templates: templates.FS})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(rep.RouterNamespace, routers))

	sb := New(t, "python-sandbox-template", WithNamespace(sandboxes), WithRouterNamespace(routers))
	sb.Run("echo through a router of another namespace").Assert(t, Expected{Out: "through a router of another namespace\n"})
	assert.Check(t, is.Equal(sb.Namespace(), sandboxes))
	assert.Check(t, is.Contains(sb.c.conn.Describe(), "service "+routers+"/sandbox-router-svc"), sb.c.conn.Describe())

	t.Setenv("SANDBOXTEST_ROUTER_NAMESPACE", routers)
	sb2 := New(t, "python-sandbox-template", WithNamespace(sandboxes))
	sb2.Run("true").Assert(t, Expected{})
	assert.Check(t, sb2.c == sb.c, "the same router namespace shares the connection")

	// Where no router runs, the error says where it looked and how to fix it.
	_, err = NewE(ctx, t, "python-sandbox-template", WithNamespace(sandboxes), WithRouterNamespace("rn-nowhere"))
	t.Logf("%v", err)
	assert.Check(t, errors.Is(err, connect.ErrRouterNotFound))
	assert.Check(t, is.ErrorContains(err, "sandbox-router-svc not found in the router namespace rn-nowhere (the sandboxes are in namespace rn-sandboxes)"))
	assert.Check(t, is.ErrorContains(err, "rn-router"), "names the namespace where a router runs")
	assert.Check(t, is.ErrorContains(err, "sandboxtest-setup deploy --namespace rn-sandboxes --router-namespace rn-nowhere"))
}
