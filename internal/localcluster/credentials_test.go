package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// The control plane's doors, checked on TestControlPlane's cluster.

// tlsGet GETs url trusting roots and presenting cert (none when nil),
// whichever CA the server asks for.
func tlsGet(ctx context.Context, url string, roots *x509.CertPool, cert *tls.Certificate) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert == nil {
				return &tls.Certificate{}, nil
			}
			return cert, nil
		},
	}}
	defer tr.CloseIdleConnections()
	return httpOK(ctx, &http.Client{Transport: tr}, url, "")
}

func issuePair(t *testing.T, ca *CA, req CertRequest) *tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(req)
	assert.NilError(t, err)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	assert.NilError(t, err)
	return &pair
}

// testEtcdRefusesStrangers: etcd's client and peer ports speak only TLS, and
// only to certificates from the etcd CA; not even the cluster CA's.
func testEtcdRefusesStrangers(ctx context.Context, t *testing.T, cp *ControlPlane) {
	client, err := cp.etcdHTTPClient()
	assert.NilError(t, err)
	defer client.CloseIdleConnections()
	assert.NilError(t, httpOK(ctx, client, cp.EtcdURL+"/health", `"health":"true"`), "kube-apiserver's etcd client certificate")

	etcdRoots := x509.NewCertPool()
	etcdRoots.AddCert(cp.Certs.etcdCA.Cert)
	clientAuth := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	other, err := NewCA("another-ca")
	assert.NilError(t, err)
	strangers := map[string]*tls.Certificate{
		"another CA's certificate": issuePair(t, other, CertRequest{CommonName: "kube-apiserver-etcd-client", Usages: clientAuth}),
		"the cluster CA's admin":   issuePair(t, cp.Certs.CA(), CertRequest{CommonName: AdminUser, Organization: []string{"system:masters"}, Usages: clientAuth}),
	}
	for _, url := range []string{cp.EtcdURL, cp.etcdPeerURL} {
		assert.Assert(t, strings.HasPrefix(url, "https://127.0.0.1:"), url)
		plain := "http://" + strings.TrimPrefix(url, "https://") + "/health"
		assert.Check(t, httpOK(ctx, http.DefaultClient, plain, "") != nil, "plain HTTP to %s served", plain)
		assert.Check(t, is.ErrorContains(tlsGet(ctx, url+"/health", etcdRoots, nil), "tls: certificate required"), url)
		for who, cert := range strangers {
			assert.Check(t, is.ErrorContains(tlsGet(ctx, url+"/health", etcdRoots, cert), "tls: unknown certificate authority"), "%s: %s", url, who)
		}
	}
}

// fakeKubelet is a kubelet API serving with cert that answers every
// request with "fake logs" and records its clients' names.
type fakeKubelet struct {
	*httptest.Server
	mu      sync.Mutex
	clients []string
}

func startFakeKubelet(t *testing.T, cert *tls.Certificate, clientCA *CA) *fakeKubelet {
	f := &fakeKubelet{}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.clients = append(f.clients, r.TLS.PeerCertificates[0].Subject.CommonName)
		f.mu.Unlock()
		_, _ = io.WriteString(w, "fake logs")
	}))
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	f.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	f.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	f.StartTLS()
	t.Cleanup(f.Close)
	return f
}

func (f *fakeKubelet) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.clients...)
}

// testAPIServerVerifiesKubelets registers two fake nodes whose kubelet APIs
// serve with a certificate from the cluster CA and from another CA, and
// asks kube-apiserver for a pod's logs on each: it talks only to the first,
// as KubeletClientUser.
func testAPIServerVerifiesKubelets(ctx context.Context, t *testing.T, cp *ControlPlane) {
	cs, err := kubernetes.NewForConfig(cp.RESTConfig)
	assert.NilError(t, err)
	serving := CertRequest{CommonName: "fake-kubelet", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	other, err := NewCA("another-ca")
	assert.NilError(t, err)
	good := startFakeKubelet(t, issuePair(t, cp.Certs.CA(), serving), cp.Certs.CA())
	bad := startFakeKubelet(t, issuePair(t, other, serving), cp.Certs.CA())

	logs := func(name string, f *fakeKubelet) (string, error) {
		port := f.Listener.Addr().(*net.TCPAddr).Port
		// Never schedulable: nothing else of the test lands on these nodes.
		_, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.NodeSpec{Unschedulable: true, Taints: []corev1.Taint{
				{Key: "sandboxtest.test/fake", Effect: corev1.TaintEffectNoSchedule},
			}},
		}, metav1.CreateOptions{})
		assert.NilError(t, err)
		t.Cleanup(func() { _ = cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		// A patch: kube-controller-manager updates the new node too.
		status := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}],"daemonEndpoints":{"kubeletEndpoint":{"Port":%d}}}}`, port)
		_, err = cs.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(status), metav1.PatchOptions{}, "status")
		assert.NilError(t, err)
		_, err = cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{NodeName: name, Containers: []corev1.Container{{Name: "c", Image: "example.invalid/c:1"}},
				Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}},
		}, metav1.CreateOptions{})
		assert.NilError(t, err)
		t.Cleanup(func() {
			zero := int64(0)
			_ = cs.CoreV1().Pods("default").Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		})
		var out []byte
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			out, err = cs.CoreV1().Pods("default").GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
			if err != nil {
				// On failure the body is kube-apiserver's reason.
				err = fmt.Errorf("%w: %s", err, out)
				if !strings.Contains(err.Error(), "x509") {
					return poll.Continue("logs of %s: %v", name, err) // the node's status may not show yet
				}
			}
			return poll.Success()
		}, poll.WithTimeout(10*time.Second), poll.WithDelay(100*time.Millisecond))
		return string(out), err
	}

	out, err := logs("fake-kubelet-cluster-ca", good)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(out, "fake logs"))
	assert.Check(t, is.DeepEqual(good.seen(), []string{KubeletClientUser}))

	_, err = logs("fake-kubelet-other-ca", bad)
	assert.Check(t, is.ErrorContains(err, "x509: certificate signed by unknown authority"))
	assert.Check(t, is.Len(bad.seen(), 0), "kube-apiserver sent a request to a kubelet it cannot verify")
}
