package localcluster_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
)

// BenchmarkStart measures starting (and stopping) a whole local cluster with
// cached binaries: go test -bench Start -benchtime 5x ./internal/localcluster
func BenchmarkStart(b *testing.B) {
	var startTimes []time.Duration
	for b.Loop() {
		t0 := time.Now()
		c, err := localcluster.Start(context.Background(), localcluster.Options{Dir: b.TempDir(), Log: io.Discard}, nil)
		if err != nil {
			b.Fatal(err)
		}
		startTimes = append(startTimes, time.Since(t0))
		b.StopTimer()
		c.Stop()
		b.StartTimer()
	}
	reportPercentiles(b, "start", startTimes)
}

// BenchmarkColdClaimReady measures SandboxClaim creation to Ready=True on a
// cold pool (replicas 0), watched, one claim at a time; each claim is deleted
// before the next: go test -bench ColdClaim -benchtime 20x ./internal/localcluster
func BenchmarkColdClaimReady(b *testing.B) {
	tmpl, pool := templateAndPool("bench", runtimeImage)
	_, ext := benchCluster(b, tmpl, pool)
	coldClaims(b, ext, 0)
}

// BenchmarkColdClaimReadyPaced is BenchmarkColdClaimReady with 300 ms
// (untimed) between a claim's deletion and the next claim, as a test that
// uses its sandbox before asking for the next: work the node does between
// pods (making its spare pod init) is then off the next claim's path.
func BenchmarkColdClaimReadyPaced(b *testing.B) {
	tmpl, pool := templateAndPool("bench", runtimeImage)
	_, ext := benchCluster(b, tmpl, pool)
	coldClaims(b, ext, 300*time.Millisecond)
}

// benchCluster starts a local cluster, stopped when the benchmark ends,
// with tmpl and pool (both named "bench").
func benchCluster(b *testing.B, tmpl *extv1beta1.SandboxTemplate, pool *extv1beta1.SandboxWarmPool) (*localcluster.Cluster, extclient.Interface) {
	b.Helper()
	ctx := context.Background()
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: b.TempDir(), Log: io.Discard}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Stop() })
	ext := extclient.NewForConfigOrDie(c.RESTConfig)
	if _, err := ext.ExtensionsV1beta1().SandboxTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := ext.ExtensionsV1beta1().SandboxWarmPools(ns).Create(ctx, pool, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	return c, ext
}

// coldClaims times claims from pool "bench" to Ready, one at a time, each
// deleted (untimed) and pause passed before the next, and reports the percentiles.
func coldClaims(b *testing.B, ext extclient.Interface, pause time.Duration) {
	ctx := context.Background()
	var lat []time.Duration
	busy0 := machineBusy(b)
	defer func() {
		b.ReportMetric(float64((machineBusy(b)-busy0).Microseconds())/1000/float64(b.N), "cpu-ms/claim")
	}()
	b.ResetTimer()
	for b.Loop() {
		d, name, err := claimReady(ctx, ext, "bench")
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, d)
		b.StopTimer()
		_ = ext.ExtensionsV1beta1().SandboxClaims(ns).Delete(ctx, name, metav1.DeleteOptions{})
		time.Sleep(pause)
		b.StartTimer()
	}
	reportPercentiles(b, "ready", lat)
}

// readySandboxPod claims a sandbox from pool "bench" and returns its pod once Ready.
func readySandboxPod(b *testing.B, c *localcluster.Cluster, ext extclient.Interface) *corev1.Pod {
	b.Helper()
	ctx := context.Background()
	_, name, err := claimReady(ctx, ext, "bench")
	if err != nil {
		b.Fatal(err)
	}
	cl, err := ext.ExtensionsV1beta1().SandboxClaims(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	pod, err := kubernetes.NewForConfigOrDie(c.RESTConfig).CoreV1().Pods(ns).Get(ctx, cl.Status.SandboxStatus.Name, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return pod
}

// claimReady creates a claim and watches it until Ready=True.
func claimReady(ctx context.Context, ext extclient.Interface, pool string) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	claims := ext.ExtensionsV1beta1().SandboxClaims(ns)
	t0 := time.Now()
	claim, err := claims.Create(ctx, newClaim(pool), metav1.CreateOptions{})
	if err != nil {
		return 0, "", err
	}
	w, err := claims.Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", claim.Name).String(),
		ResourceVersion: claim.ResourceVersion,
	})
	if err != nil {
		return 0, claim.Name, err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if ev.Type != watch.Modified {
			continue
		}
		cl := ev.Object.(*extv1beta1.SandboxClaim)
		for _, cond := range cl.Status.Conditions {
			if cond.Type == "Ready" && cond.Status == metav1.ConditionTrue {
				return time.Since(t0), claim.Name, nil
			}
		}
	}
	return 0, claim.Name, ctx.Err()
}

func reportPercentiles(b *testing.B, what string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	at := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	b.ReportMetric(float64(at(0.50).Microseconds())/1000, what+"-p50-ms")
	b.ReportMetric(float64(at(0.95).Microseconds())/1000, what+"-p95-ms")
	b.ReportMetric(float64(ds[len(ds)-1].Microseconds())/1000, what+"-max-ms")
}

// BenchmarkRunTrue measures one POST /execute {"command":"true"} on a Ready
// sandbox, at its pod IP (without the router): go test -bench RunTrue -benchtime 200x ./internal/localcluster
func BenchmarkRunTrue(b *testing.B) {
	tmpl, pool := templateAndPool("bench", runtimeImage)
	c, ext := benchCluster(b, tmpl, pool)
	pod := readySandboxPod(b, c, ext)
	url := "http://" + pod.Status.PodIP + ":8888/execute"
	// Through the cluster network, as the node's port-forwards go; one
	// kept-alive connection, as a tunnel's.
	client := podClient(c)
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		resp, err := client.Post(url, "application/json", strings.NewReader(`{"command":"true"}`))
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `"exit_code":0`) {
			b.Fatalf("true: %s", body)
		}
		lat = append(lat, time.Since(t0))
	}
	reportPercentiles(b, "run", lat)
}

// BenchmarkGatewayRunTrue measures POST /execute {"command":"true"} through
// the router, once straight to the router pod and once through a local
// Gateway's listener (the data plane's proxy in front of the same router),
// alternating: go test -run '^$' -bench GatewayRunTrue -benchtime 200x ./internal/localcluster
func BenchmarkGatewayRunTrue(b *testing.B) {
	ctx := context.Background()
	tmpl, pool := templateAndPool("bench", runtimeImage)
	c, ext := benchCluster(b, tmpl, pool)
	cs := kubernetes.NewForConfigOrDie(c.RESTConfig)
	gw := gwclient.NewForConfigOrDie(c.RESTConfig)
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, routerDeployment(), metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "sandbox-router-svc", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "sandbox-router"},
			Ports: []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := gw.GatewayV1().Gateways(ns).Create(ctx, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: ns},
		Spec: gwv1.GatewaySpec{GatewayClassName: "sandboxtest-local",
			Listeners: []gwv1.Listener{{Name: "http", Protocol: gwv1.HTTPProtocolType, Port: 8080}}},
	}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := gw.GatewayV1().HTTPRoutes(ns).Create(ctx, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: ns},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "bench"}}},
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
				BackendObjectReference: gwv1.BackendObjectReference{Name: "sandbox-router-svc", Port: ptr(gwv1.PortNumber(8080))}}}}}},
		},
	}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	pod := readySandboxPod(b, c, ext)
	header := http.Header{"Content-Type": {"application/json"}, "X-Sandbox-ID": {pod.Name}, "X-Sandbox-Namespace": {ns},
		"X-Sandbox-Port": {"8888"}, "X-Sandbox-Pod-IP": {pod.Status.PodIP}}
	run := func(client *http.Client, base string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/execute", strings.NewReader(`{"command":"true"}`))
		req.Header = header.Clone()
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `"exit_code":0`) {
			return fmt.Errorf("%s: %s: %s", base, resp.Status, body)
		}
		return nil
	}
	// The router pod through the cluster network (as port-forwards reach
	// it), the Gateway from the host.
	toPods := podClient(c)
	// Both paths answer before timing starts: the router Ready, the Gateway programmed.
	var router, gateway string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		pods, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=sandbox-router"})
		g, _ := gw.GatewayV1().Gateways(ns).Get(ctx, "bench", metav1.GetOptions{})
		if len(pods.Items) > 0 && g != nil && len(g.Status.Addresses) > 0 {
			router, gateway = "http://"+pods.Items[0].Status.PodIP+":8080", "http://"+g.Status.Addresses[0].Value+":8080"
			if run(toPods, router) == nil && run(http.DefaultClient, gateway) == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("router %q or gateway %q does not answer", router, gateway)
		}
	}
	var direct, proxied []time.Duration
	b.ResetTimer()
	for b.Loop() {
		for _, p := range []struct {
			client *http.Client
			base   string
			lat    *[]time.Duration
		}{{toPods, router, &direct}, {http.DefaultClient, gateway, &proxied}} {
			t0 := time.Now()
			if err := run(p.client, p.base); err != nil {
				b.Fatal(err)
			}
			*p.lat = append(*p.lat, time.Since(t0))
		}
	}
	reportPercentiles(b, "router", direct)
	reportPercentiles(b, "gateway", proxied)
}

// machineBusy is the CPU time the whole machine has spent outside idle and
// I/O wait (/proc/stat), in clock ticks of 10 ms: the cluster, the node and
// the pods' processes, and whatever else runs. Over many claims it says what
// a claim costs the machine, the pauses' idle work included.
func machineBusy(b *testing.B) time.Duration {
	b.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(strings.SplitN(string(data), "\n", 2)[0]) // cpu user nice system idle iowait irq softirq steal ...
	var ticks int64
	for i, f := range fields[1:] {
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
