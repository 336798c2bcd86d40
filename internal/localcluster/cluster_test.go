package localcluster_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	sdk "sigs.k8s.io/agent-sandbox/clients/go/sandbox"
	asclient "sigs.k8s.io/agent-sandbox/clients/k8s/clientset/versioned"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
	"github.com/agentsandbox/go-sandboxtest/internal/processnode"
)

const (
	runtimeImage = "us-central1-docker.pkg.dev/k8s-staging-images/agent-sandbox/python-runtime-sandbox:latest-main"
	routerImage  = "registry.k8s.io/agent-sandbox/sandbox-router-go:v1.0.0"
	ns           = "default"
)

type env struct {
	c   *localcluster.Cluster
	gw  gwclient.Interface
	cs  kubernetes.Interface
	as  asclient.Interface
	ext extclient.Interface
}

// TestLocalCluster drives one local cluster through what a user does with it:
// sandboxes from a template, the kubelet API, the real router and the upstream SDK.
func TestLocalCluster(t *testing.T) {
	ctx := context.Background()
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: t.TempDir(), Log: testWriter{t}}, nil)
	assert.NilError(t, err)
	t.Cleanup(func() { c.Stop() })
	e := &env{c: c,
		cs:  kubernetes.NewForConfigOrDie(c.RESTConfig),
		gw:  gwclient.NewForConfigOrDie(c.RESTConfig),
		as:  asclient.NewForConfigOrDie(c.RESTConfig),
		ext: extclient.NewForConfigOrDie(c.RESTConfig),
	}
	e.createTemplate(t, "python-sandbox-template", runtimeImage)

	t.Run("node", func(t *testing.T) {
		n, err := e.cs.CoreV1().Nodes().Get(ctx, processnode.DefaultName, metav1.GetOptions{})
		assert.NilError(t, err)
		assert.Check(t, is.Equal(n.Status.Addresses[0].Address, "127.0.0.1"))
		assert.Check(t, n.Status.DaemonEndpoints.KubeletEndpoint.Port > 0)
		assert.Check(t, is.Equal(n.Labels[processnode.LocalNodeLabel], "true"))
	})

	// The node's kubelet API runs commands in pods: it serves kube-apiserver
	// (the subtests below go through it) and nobody else.
	t.Run("kubelet API refuses strangers", func(t *testing.T) {
		roots := x509.NewCertPool()
		roots.AddCert(c.Certs.CA().Cert) // its serving certificate is the cluster CA's, for 127.0.0.1
		url := "https://" + c.Node.Addr + "/containerLogs/default/any/any"
		get := func(cert *tls.Certificate) (int, string, error) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					if cert == nil {
						return &tls.Certificate{}, nil
					}
					return cert, nil
				}}}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(url)
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body), nil
		}
		issue := func(ca *localcluster.CA, cn string, groups ...string) *tls.Certificate {
			certPEM, keyPEM, err := ca.Issue(localcluster.CertRequest{CommonName: cn, Organization: groups,
				Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			assert.NilError(t, err)
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			assert.NilError(t, err)
			return &pair
		}
		other, err := localcluster.NewCA("another-ca")
		assert.NilError(t, err)

		_, _, err = get(nil)
		assert.Check(t, is.ErrorContains(err, "tls: certificate required"))
		_, _, err = get(issue(other, localcluster.KubeletClientUser))
		assert.Check(t, is.ErrorContains(err, "tls: unknown certificate authority"))
		// The cluster CA's admin, as anyone with an approved CSR could be.
		code, body, err := get(issue(c.Certs.CA(), localcluster.AdminUser, "system:masters"))
		assert.NilError(t, err)
		assert.Check(t, is.Equal(code, http.StatusForbidden))
		assert.Check(t, is.Contains(body, "may not use the kubelet API"))
	})

	t.Run("claim, kubelet API and delete", func(t *testing.T) {
		claim := e.claim(t, "python-sandbox-template")
		pod := e.readyPod(t, claim)
		assert.Check(t, is.Equal(pod.Spec.NodeName, processnode.DefaultName))
		assert.Check(t, strings.HasPrefix(pod.Status.PodIP, "10.244."), pod.Status.PodIP)
		assert.Check(t, is.Equal(pod.Status.Phase, corev1.PodRunning))

		// Nothing of the pod listens on the host: the host's sockets show
		// none of its ports, and its server answers only through the
		// cluster network. (Some machines accept any outgoing TCP
		// connection, so a connect from the host proves nothing; the
		// answer does.)
		assert.Check(t, is.Len(hostListeners(t, pod.Status.PodIP), 0))
		root := "http://" + net.JoinHostPort(pod.Status.PodIP, "8888") + "/"
		_, body := get(t, &http.Client{Timeout: 2 * time.Second}, root)
		assert.Check(t, !strings.Contains(body, "Sandbox Runtime is active"), "the sandbox's server answers the host: %s", body)
		_, body = get(t, podClient(e.c), root)
		assert.Check(t, is.Contains(body, "Sandbox Runtime is active"), "through the cluster network")

		port := e.portForward(t, pod.Name, 8888)
		out := execute(t, fmt.Sprintf("http://127.0.0.1:%d/execute", port), nil, "echo hi")
		assert.Check(t, is.Equal(out.Stdout, "hi\n"))
		assert.Check(t, is.Equal(out.ExitCode, 0))

		stdout, stderr, err := e.exec(pod.Name, "echo", "hi")
		assert.NilError(t, err, stderr)
		assert.Check(t, is.Equal(stdout, "hi\n"))
		_, _, err = e.exec(pod.Name, "sh", "-c", "exit 3")
		assert.Check(t, is.ErrorContains(err, "exit code 3"))

		logs, err := e.cs.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		assert.NilError(t, err)
		assert.Check(t, is.Contains(string(logs), "POST /execute"))

		deleted := time.Now()
		assert.NilError(t, e.ext.ExtensionsV1beta1().SandboxClaims(ns).Delete(ctx, claim, metav1.DeleteOptions{}))
		poll.WaitOn(t, e.gone(pod.Name), poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))
		t.Logf("pod %s gone %s after the claim was deleted", pod.Name, time.Since(deleted).Round(time.Millisecond))
		_, err = podClient(e.c).Get(fmt.Sprintf("http://%s:8888/", pod.Status.PodIP))
		assert.Check(t, err != nil, "the sandbox still serves after its pod was deleted")
	})

	t.Run("router and upstream SDK", func(t *testing.T) {
		router := e.deployRouter(t)
		claim := e.claim(t, "python-sandbox-template")
		pod := e.readyPod(t, claim)
		sbName := e.sandboxName(t, claim)

		// Through kube-apiserver's port-forward to the router, as a tunnel does.
		port := e.portForward(t, router.Name, 8080)
		out := execute(t, fmt.Sprintf("http://127.0.0.1:%d/execute", port), http.Header{
			"X-Sandbox-ID": {sbName}, "X-Sandbox-Namespace": {ns}, "X-Sandbox-Port": {"8888"}, "X-Sandbox-Pod-IP": {pod.Status.PodIP},
		}, "echo through the router")
		assert.Check(t, is.Equal(out.Stdout, "through the router\n"))

		// The Service has endpoints: the router pod's address.
		e.createRouterService(t)
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			slices, err := e.cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=sandbox-router-svc"})
			if err != nil {
				return poll.Error(err)
			}
			for _, s := range slices.Items {
				for _, ep := range s.Endpoints {
					if len(ep.Addresses) > 0 && ep.Addresses[0] == router.Status.PodIP {
						return poll.Success()
					}
				}
			}
			return poll.Continue("no endpoint %s in the router Service's EndpointSlices", router.Status.PodIP)
		}, poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))

		// The unchanged upstream Go SDK in its default tunnel mode (router
		// pods from EndpointSlices, port-forward), from the warm pool.
		sb, err := sdk.New(ctx, sdk.Options{
			WarmPoolName: "python-sandbox-template", Namespace: ns, RestConfig: e.c.RESTConfig,
			Quiet: true, SandboxReadyTimeout: 60 * time.Second,
		})
		assert.NilError(t, err)
		assert.NilError(t, sb.Open(ctx))
		defer sb.Close(ctx)
		res, err := sb.Run(ctx, "echo sdk")
		assert.NilError(t, err)
		assert.Check(t, is.Equal(res.Stdout, "sdk\n"))
		assert.NilError(t, sb.Write(ctx, "note.txt", []byte("written by the SDK")))
		data, err := sb.Read(ctx, "note.txt")
		assert.NilError(t, err)
		assert.Check(t, is.Equal(string(data), "written by the SDK"))
		entries, err := sb.List(ctx, ".")
		assert.NilError(t, err)
		assert.Check(t, is.Len(entries, 1))
		ok, err := sb.Exists(ctx, "note.txt")
		assert.NilError(t, err)
		assert.Check(t, ok)
	})

	t.Run("unknown image fails with the reason", func(t *testing.T) {
		e.createTemplate(t, "busybox-template", "docker.io/library/busybox:1.36")
		claim := e.claim(t, "busybox-template")
		var pod *corev1.Pod
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			pod = e.podOf(claim)
			if pod == nil || pod.Status.Phase != corev1.PodFailed {
				return poll.Continue("pod of claim %s not Failed yet", claim)
			}
			return poll.Success()
		}, poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))
		assert.Check(t, is.Equal(pod.Status.Reason, "NoRunner"))
		assert.Check(t, is.Contains(pod.Status.Message, "busybox:1.36"))
		assert.Check(t, is.Contains(pod.Status.Message, "Registry.Register"))
		evs, err := e.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name})
		assert.NilError(t, err)
		found := false
		for _, ev := range evs.Items {
			found = found || ev.Reason == "NoRunner"
		}
		assert.Check(t, found, "no NoRunner event for %s", pod.Name)
	})

	var port80Addr string
	t.Run("local gateway", func(t *testing.T) {
		// sandbox-router-svc exists (the router subtest): its targetPort is the port's name.
		e.createGateway(t, "good", 8080)
		e.createGateway(t, "port-80", 80)

		var route *gwv1.HTTPRoute
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			route, err = e.gw.GatewayV1().HTTPRoutes(ns).Get(ctx, "good", metav1.GetOptions{})
			if err != nil || len(route.Status.Parents) == 0 {
				return poll.Continue("HTTPRoute good has no status yet (%v)", err)
			}
			return poll.Success()
		}, poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))
		assert.Assert(t, is.Len(route.Status.Parents, 1))
		assert.Check(t, is.Equal(string(route.Status.Parents[0].ControllerName), localcluster.GatewayControllerName))
		assert.Check(t, meta.IsStatusConditionTrue(route.Status.Parents[0].Conditions, "Accepted"))
		assert.Check(t, meta.IsStatusConditionTrue(route.Status.Parents[0].Conditions, "ResolvedRefs"))
		var good *gwv1.Gateway
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			good = e.waitGateway(t, "good", metav1.ConditionTrue)
			if len(good.Status.Listeners) != 1 || good.Status.Listeners[0].AttachedRoutes != 1 {
				return poll.Continue("Gateway good does not count its route yet: %+v", good.Status.Listeners)
			}
			return poll.Success()
		}, poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))
		assert.Assert(t, is.Len(good.Status.Addresses, 1))
		addr := good.Status.Addresses[0].Value
		assert.Check(t, strings.HasPrefix(addr, "127.77."), addr)
		assert.Assert(t, is.Len(good.Status.Listeners, 1))
		l := good.Status.Listeners[0]
		assert.Check(t, is.Equal(l.AttachedRoutes, int32(1)))
		assert.Check(t, is.DeepEqual(l.SupportedKinds, []gwv1.RouteGroupKind{{Group: ptr(gwv1.Group(gwv1.GroupName)), Kind: "HTTPRoute"}}))
		for _, c := range []string{"Accepted", "Programmed", "ResolvedRefs"} {
			assert.Check(t, meta.IsStatusConditionTrue(l.Conditions, c), "listener %s: %+v", c, l.Conditions)
		}

		// The router's /healthz, then a command in a sandbox, through the Gateway's listener.
		code, body := httpGet(t, "http://"+addr+":8080/healthz")
		assert.Check(t, is.Equal(code, http.StatusOK), body)
		claim := e.claim(t, "python-sandbox-template")
		pod := e.readyPod(t, claim)
		out := execute(t, "http://"+addr+":8080/execute", http.Header{
			"X-Sandbox-ID": {e.sandboxName(t, claim)}, "X-Sandbox-Namespace": {ns}, "X-Sandbox-Port": {"8888"}, "X-Sandbox-Pod-IP": {pod.Status.PodIP},
		}, "echo through the gateway")
		assert.Check(t, is.Equal(out.Stdout, "through the gateway\n"))

		// Port 80: the URL upstream's clients build (no port), when this process may bind it.
		if os.Geteuid() == 0 {
			g := e.waitGateway(t, "port-80", metav1.ConditionTrue)
			port80Addr = g.Status.Addresses[0].Value
			assert.Check(t, port80Addr != addr, "two Gateways share %s", addr)
			code, body := httpGet(t, "http://"+port80Addr+"/healthz")
			assert.Check(t, is.Equal(code, http.StatusOK), body)

			// The unchanged upstream Go SDK in its gateway mode: it reads the
			// Gateway's address and sends to http://<address>/.
			sb, err := sdk.New(ctx, sdk.Options{
				WarmPoolName: "python-sandbox-template", Namespace: ns, RestConfig: e.c.RESTConfig,
				GatewayName: "port-80", GatewayNamespace: ns, Quiet: true, SandboxReadyTimeout: 60 * time.Second,
			})
			assert.NilError(t, err)
			assert.NilError(t, sb.Open(ctx))
			defer sb.Close(ctx)
			res, err := sb.Run(ctx, "echo sdk through the gateway")
			assert.NilError(t, err)
			assert.Check(t, is.Equal(res.Stdout, "sdk through the gateway\n"))
		} else {
			g := e.waitGateway(t, "port-80", metav1.ConditionFalse)
			cond := meta.FindStatusCondition(g.Status.Conditions, "Programmed")
			assert.Check(t, is.Contains(cond.Message, "port 80 is privileged"))
		}

		// A port another process holds at the Gateway's address: that
		// listener is not programmed and says why; the other one serves on.
		squat, err := net.Listen("tcp", addr+":0")
		assert.NilError(t, err)
		defer squat.Close()
		busy := gwv1.PortNumber(squat.Addr().(*net.TCPAddr).Port)
		good, err = e.gw.GatewayV1().Gateways(ns).Get(ctx, "good", metav1.GetOptions{})
		assert.NilError(t, err)
		good.Spec.Listeners = append(good.Spec.Listeners, gwv1.Listener{Name: "busy", Protocol: gwv1.HTTPProtocolType, Port: busy})
		_, err = e.gw.GatewayV1().Gateways(ns).Update(ctx, good, metav1.UpdateOptions{})
		assert.NilError(t, err)
		good = e.waitGateway(t, "good", metav1.ConditionFalse)
		cond := meta.FindStatusCondition(good.Status.Conditions, "Programmed")
		assert.Check(t, is.Equal(cond.Reason, "Invalid"))
		assert.Check(t, is.Contains(cond.Message, fmt.Sprintf("listener busy: %s:%d is in use by another process", addr, busy)))
		assert.Assert(t, is.Len(good.Status.Listeners, 2))
		lc := meta.FindStatusCondition(good.Status.Listeners[1].Conditions, "Programmed")
		assert.Check(t, is.Equal(lc.Reason, "PortUnavailable"))
		assert.Check(t, is.Equal(good.Status.Addresses[0].Value, addr), "the address moved")
		code, _ = httpGet(t, "http://"+addr+":8080/healthz")
		assert.Check(t, is.Equal(code, http.StatusOK))

		// A route to a Service that does not exist: ResolvedRefs=False.
		_, err = e.gw.GatewayV1().HTTPRoutes(ns).Create(ctx, &gwv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Name: "dangling", Namespace: ns},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "good", SectionName: ptr(gwv1.SectionName("nope"))}}},
				Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
					BackendObjectReference: gwv1.BackendObjectReference{Name: "no-such-svc", Port: ptr(gwv1.PortNumber(80))}}}}}},
			},
		}, metav1.CreateOptions{})
		assert.NilError(t, err)
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			r, err := e.gw.GatewayV1().HTTPRoutes(ns).Get(ctx, "dangling", metav1.GetOptions{})
			if err != nil || len(r.Status.Parents) == 0 {
				return poll.Continue("no status yet (%v)", err)
			}
			acc := meta.FindStatusCondition(r.Status.Parents[0].Conditions, "Accepted")
			res := meta.FindStatusCondition(r.Status.Parents[0].Conditions, "ResolvedRefs")
			assert.Check(t, is.Equal(acc.Reason, "NoMatchingParent"))
			assert.Check(t, is.Equal(res.Reason, "BackendNotFound"))
			assert.Check(t, is.Contains(res.Message, "Service default/no-such-svc not found"))
			return poll.Success()
		}, poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))

		// Deleted, the Gateway's listeners close.
		assert.NilError(t, e.gw.GatewayV1().Gateways(ns).Delete(ctx, "good", metav1.DeleteOptions{}))
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			conn, err := net.Dial("tcp", addr+":8080")
			if err != nil {
				return poll.Success()
			}
			conn.Close()
			return poll.Continue("%s:8080 still accepts", addr)
		}, poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))
	})

	t.Run("stop leaves no process", func(t *testing.T) {
		router := e.podByLabel(t, "app=sandbox-router")
		pids := e.c.Pids()
		assert.Check(t, len(pids) >= 5, "pids: %v", pids)
		assert.NilError(t, e.c.Stop())
		for _, pid := range pids {
			assert.Check(t, !alive(pid), "process %d survived Stop", pid)
		}
		_, err := podClient(e.c).Get("http://" + router.Status.PodIP + ":8080/healthz")
		assert.Check(t, err != nil, "router still answers after Stop")
		if port80Addr != "" {
			_, err := net.Dial("tcp", port80Addr+":80")
			assert.Check(t, err != nil, "the Gateway still listens after Stop")
		}
	})
}

func (e *env) createTemplate(t *testing.T, name, image string) {
	t.Helper()
	tmpl, pool := templateAndPool(name, image)
	_, err := e.ext.ExtensionsV1beta1().SandboxTemplates(ns).Create(context.Background(), tmpl, metav1.CreateOptions{})
	assert.NilError(t, err)
	_, err = e.ext.ExtensionsV1beta1().SandboxWarmPools(ns).Create(context.Background(), pool, metav1.CreateOptions{})
	assert.NilError(t, err)
}

// templateAndPool is a one-container template serving on 8888 and its cold pool.
func templateAndPool(name, image string) (*extv1beta1.SandboxTemplate, *extv1beta1.SandboxWarmPool) {
	tmpl := &extv1beta1.SandboxTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: extv1beta1.SandboxTemplateSpec{SandboxBlueprint: sandboxv1beta1.SandboxBlueprint{
			PodTemplate: sandboxv1beta1.PodTemplate{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "python-runtime", Image: image,
				Ports: []corev1.ContainerPort{{ContainerPort: 8888}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8888)},
				}},
			}}}},
		}},
	}
	pool := &extv1beta1.SandboxWarmPool{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       extv1beta1.SandboxWarmPoolSpec{Replicas: new(int32), TemplateRef: extv1beta1.SandboxTemplateRef{Name: name}},
	}
	return tmpl, pool
}

func newClaim(pool string) *extv1beta1.SandboxClaim {
	return &extv1beta1.SandboxClaim{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-", Namespace: ns},
		Spec:       extv1beta1.SandboxClaimSpec{WarmPoolRef: extv1beta1.SandboxWarmPoolRef{Name: pool}},
	}
}

func (e *env) claim(t *testing.T, pool string) string {
	t.Helper()
	c, err := e.ext.ExtensionsV1beta1().SandboxClaims(ns).Create(context.Background(), newClaim(pool), metav1.CreateOptions{})
	assert.NilError(t, err)
	return c.Name
}

func (e *env) sandboxName(t *testing.T, claim string) string {
	c, err := e.ext.ExtensionsV1beta1().SandboxClaims(ns).Get(context.Background(), claim, metav1.GetOptions{})
	assert.NilError(t, err)
	return c.Status.SandboxStatus.Name
}

// podOf finds the claim's pod: the Sandbox named in the claim's status, and its pod (same name).
func (e *env) podOf(claim string) *corev1.Pod {
	ctx := context.Background()
	c, err := e.ext.ExtensionsV1beta1().SandboxClaims(ns).Get(ctx, claim, metav1.GetOptions{})
	if err != nil || c.Status.SandboxStatus.Name == "" {
		return nil
	}
	pod, err := e.cs.CoreV1().Pods(ns).Get(ctx, c.Status.SandboxStatus.Name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return pod
}

// readyPod waits for the claim to be Ready and returns its pod.
func (e *env) readyPod(t *testing.T, claim string) *corev1.Pod {
	t.Helper()
	start := time.Now()
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		c, err := e.ext.ExtensionsV1beta1().SandboxClaims(ns).Get(context.Background(), claim, metav1.GetOptions{})
		if err != nil {
			return poll.Error(err)
		}
		for _, cond := range c.Status.Conditions {
			if cond.Type == "Ready" && cond.Status == metav1.ConditionTrue {
				return poll.Success()
			}
		}
		return poll.Continue("claim %s not Ready: %+v", claim, c.Status.Conditions)
	}, poll.WithTimeout(60*time.Second), poll.WithDelay(20*time.Millisecond))
	t.Logf("claim %s Ready after %s", claim, time.Since(start).Round(time.Millisecond))
	pod := e.podOf(claim)
	assert.Assert(t, pod != nil)
	return pod
}

func (e *env) gone(pod string) poll.Check {
	return func(poll.LogT) poll.Result {
		p, err := e.cs.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return poll.Success()
		}
		if err != nil {
			return poll.Continue("pod %s: %v", pod, err)
		}
		return poll.Continue("pod %s still exists (deletionTimestamp %v, phase %s, containers %+v)",
			pod, p.DeletionTimestamp, p.Status.Phase, p.Status.ContainerStatuses)
	}
}

func (e *env) podByLabel(t *testing.T, selector string) *corev1.Pod {
	t.Helper()
	pods, err := e.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	assert.NilError(t, err)
	assert.Assert(t, len(pods.Items) > 0, "no pod with %s", selector)
	return &pods.Items[0]
}

// deployRouter creates a Deployment running a router image and waits for its pod to be Ready.
func (e *env) deployRouter(t *testing.T) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	_, err := e.cs.AppsV1().Deployments(ns).Create(ctx, routerDeployment(), metav1.CreateOptions{})
	assert.NilError(t, err)
	var pod *corev1.Pod
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		pods, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=sandbox-router"})
		if err != nil {
			return poll.Error(err)
		}
		for i := range pods.Items {
			for _, c := range pods.Items[i].Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					pod = &pods.Items[i]
					return poll.Success()
				}
			}
		}
		return poll.Continue("no Ready router pod yet (%d pods)", len(pods.Items))
	}, poll.WithTimeout(60*time.Second), poll.WithDelay(50*time.Millisecond))
	return pod
}

// createRouterService creates sandbox-router-svc, as deploy does.
func (e *env) createRouterService(t *testing.T) {
	t.Helper()
	_, err := e.cs.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "sandbox-router-svc", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "sandbox-router"},
			Ports: []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
}

// podClient reaches pod addresses, which only the cluster's network routes.
func podClient(c *localcluster.Cluster) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: c.Node.DialContext}, Timeout: 30 * time.Second}
}

func (e *env) createGateway(t *testing.T, name string, port int32) {
	t.Helper()
	ctx := context.Background()
	_, err := e.gw.GatewayV1().Gateways(ns).Create(ctx, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: gwv1.GatewaySpec{GatewayClassName: "sandboxtest-local",
			Listeners: []gwv1.Listener{{Name: "http", Protocol: gwv1.HTTPProtocolType, Port: gwv1.PortNumber(port)}}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	_, err = e.gw.GatewayV1().HTTPRoutes(ns).Create(ctx, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: gwv1.ObjectName(name)}}},
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
				BackendObjectReference: gwv1.BackendObjectReference{Name: "sandbox-router-svc", Port: ptr(gwv1.PortNumber(8080))},
			}}}}},
		},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
}

func (e *env) waitGateway(t *testing.T, name string, programmed metav1.ConditionStatus) *gwv1.Gateway {
	t.Helper()
	var g *gwv1.Gateway
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		var err error
		g, err = e.gw.GatewayV1().Gateways(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return poll.Error(err)
		}
		if c := meta.FindStatusCondition(g.Status.Conditions, "Programmed"); c != nil && c.Status == programmed {
			return poll.Success()
		}
		return poll.Continue("gateway %s: %+v", name, g.Status.Conditions)
	}, poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))
	return g
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	assert.NilError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func ptr[T any](v T) *T { return &v }

// routerDeployment runs a router image, Ready when its /readyz answers.
func routerDeployment() *appsv1.Deployment {
	labels := map[string]string{"app": "sandbox-router"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "sandbox-router", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "router", Image: routerImage,
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
						HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8081)},
					}},
				}}},
			},
		},
	}
}

// portForward opens a client-go port-forward through kube-apiserver to the pod.
func (e *env) portForward(t *testing.T, pod string, port int) int {
	t.Helper()
	transport, upgrader, err := spdy.RoundTripperFor(e.c.RESTConfig)
	assert.NilError(t, err)
	u := e.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, io.Discard, io.Discard)
	assert.NilError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	t.Cleanup(func() { close(stop) })
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("port-forward to %s: %v", pod, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("port-forward to %s not ready after 30s", pod)
	}
	ports, err := fw.GetPorts()
	assert.NilError(t, err)
	return int(ports[0].Local)
}

func (e *env) exec(pod string, cmd ...string) (string, string, error) {
	req := e.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(e.c.RESTConfig, http.MethodPost, req.URL())
	if err != nil {
		return "", "", err
	}
	var out, errb bytes.Buffer
	err = ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), err
}

type execResult struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode int    `json:"exit_code"`
}

func execute(t *testing.T, u string, h http.Header, command string) execResult {
	t.Helper()
	return executeWith(t, http.DefaultClient, u, h, command)
}

func executeWith(t *testing.T, client *http.Client, u string, h http.Header, command string) execResult {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"command": command})
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	assert.NilError(t, err)
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	assert.NilError(t, err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	assert.Equal(t, resp.StatusCode, http.StatusOK, string(data))
	var out execResult
	assert.NilError(t, json.Unmarshal(data, &out), string(data))
	return out
}

// get returns the status and body of a GET, or 0 and the error's text.
func get(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// hostListeners lists the host's listening TCP sockets on ip (as ss -ltn
// would show them), from /proc/net/tcp of this process's network namespace.
func hostListeners(t *testing.T, ip string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/net/tcp")
	assert.NilError(t, err)
	v4 := net.ParseIP(ip).To4()
	want := fmt.Sprintf("%02X%02X%02X%02X:", v4[3], v4[2], v4[1], v4[0])
	var out []string
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[3] == "0A" && strings.HasPrefix(f[1], want) { // 0A: LISTEN
			out = append(out, f[1])
		}
	}
	return out
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie is dead for our purposes.
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(data), ") Z ")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
