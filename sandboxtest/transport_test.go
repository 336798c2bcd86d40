package sandboxtest

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/agentsandbox/go-sandboxtest/connect"
)

// TestHTTPTransportReachesAnHTTPSRouter puts an https proxy, whose
// certificate a private CA signed, in front of the router and reaches the
// sandbox through it in direct mode: with WithHTTPTransport trusting that CA
// it works; with a transport that does not, the call says why.
func TestHTTPTransportReachesAnHTTPSRouter(t *testing.T) {
	sb0 := New(t, "python-sandbox-template") // the suite's own connection, a tunnel
	target, err := url.Parse(sb0.c.conn.URL())
	assert.NilError(t, err)
	var proxied atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	t.Setenv("SANDBOXTEST_API_URL", proxy.URL)

	tr, err := connect.TransportWithCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw}))
	assert.NilError(t, err)
	sb := New(t, "python-sandbox-template", WithHTTPTransport(tr))
	assert.Check(t, is.Equal(sb.c.choice.Mode, connect.ModeDirect))
	assert.Check(t, sb.c.conn.Transport() == tr)
	before := proxied.Load()
	sb.Run("echo over https").Assert(t, Expected{Out: "over https\n"})
	assert.Check(t, proxied.Load() > before, "the call went through the https proxy")

	// The system's roots do not know the proxy's CA.
	untrusting := &http.Transport{}
	sb2 := New(t, "python-sandbox-template", WithHTTPTransport(untrusting))
	_, err = sb2.RunE(context.Background(), "true")
	t.Logf("%v", err)
	assert.Check(t, is.ErrorContains(err, "certificate signed by unknown authority"))
}
