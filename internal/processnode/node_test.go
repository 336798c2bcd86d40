package processnode

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// testCA signs certificates for the kubelet API tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	assert.NilError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	assert.NilError(t, err)
	cert, err := x509.ParseCertificate(der)
	assert.NilError(t, err)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// issue returns a certificate and key in PEM form: a serving one for
// 127.0.0.1 when usage is ServerAuth.
func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	assert.NilError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.ParseIP(loopbackHostIP)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	assert.NilError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	assert.NilError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func (ca *testCA) clientCert(t *testing.T, cn string) *tls.Certificate {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, cn, x509.ExtKeyUsageClientAuth)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	assert.NilError(t, err)
	return &pair
}

// TestKubeletAPIServesOnlyAPIServer: the kubelet API's TLS and authorization,
// as Start sets them up, let kube-apiserver's identity in and nobody else.
func TestKubeletAPIServesOnlyAPIServer(t *testing.T) {
	const apiserver = "kube-apiserver-kubelet-client"
	clusterCA, otherCA := newTestCA(t, "cluster-ca"), newTestCA(t, "other-ca")
	servingCert, servingKey := clusterCA.issue(t, "node", x509.ExtKeyUsageServerAuth)
	cfg := Config{Name: "test-node", ServingCert: servingCert, ServingKey: servingKey, ClientCA: clusterCA.certPEM(), APIServerUser: apiserver}

	tlsCfg, err := kubeletTLS(cfg)
	assert.NilError(t, err)
	srv := httptest.NewUnstartedServer(onlyUser(cfg.APIServerUser, cfg.Name, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "served")
	})))
	srv.TLS = tlsCfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	defer srv.Close()

	roots := x509.NewCertPool()
	roots.AddCert(clusterCA.cert) // the serving certificate verifies against the cluster CA
	// get presents cert, if any, whichever CA the server asks for.
	get := func(cert *tls.Certificate) (int, string, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: roots,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if cert == nil {
					return &tls.Certificate{}, nil
				}
				return cert, nil
			},
		}}}
		defer c.CloseIdleConnections()
		resp, err := c.Get(srv.URL + "/containerLogs/default/pod/c")
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}

	code, body, err := get(clusterCA.clientCert(t, apiserver))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(code, http.StatusOK))
	assert.Check(t, is.Equal(body, "served"))

	_, _, err = get(nil)
	assert.Check(t, is.ErrorContains(err, "tls: certificate required"), "no client certificate")
	_, _, err = get(otherCA.clientCert(t, apiserver))
	assert.Check(t, is.ErrorContains(err, "tls: unknown certificate authority"), "a certificate from another CA")

	code, body, err = get(clusterCA.clientCert(t, "system:node:someone"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(code, http.StatusForbidden))
	assert.Check(t, is.Contains(body, `user "system:node:someone" may not use the kubelet API of node test-node`))
}

func TestKubeletTLSNeedsCredentials(t *testing.T) {
	ca := newTestCA(t, "cluster-ca")
	cert, key := ca.issue(t, "node", x509.ExtKeyUsageServerAuth)
	full := Config{ServingCert: cert, ServingKey: key, ClientCA: ca.certPEM(), APIServerUser: "kube-apiserver-kubelet-client"}
	_, err := kubeletTLS(full)
	assert.NilError(t, err)
	for name, unset := range map[string]func(*Config){
		"ServingCert":   func(c *Config) { c.ServingCert = nil },
		"ServingKey":    func(c *Config) { c.ServingKey = nil },
		"ClientCA":      func(c *Config) { c.ClientCA = nil },
		"APIServerUser": func(c *Config) { c.APIServerUser = "" },
	} {
		cfg := full
		unset(&cfg)
		_, err := kubeletTLS(cfg)
		assert.Check(t, is.ErrorContains(err, "are required"), "without %s", name)
	}
}
