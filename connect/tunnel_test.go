package connect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

func openTunnel(t *testing.T, o TunnelOptions) *tunnel {
	t.Helper()
	tc := cluster(t)
	if o.Log == nil {
		o.Log = t.Logf
	}
	started := time.Now()
	conn, err := Tunnel(context.Background(), tc.cfg, o)
	assert.NilError(t, err)
	t.Cleanup(func() { assert.Check(t, conn.Close()) })
	t.Logf("tunnel set up in %s: %s", time.Since(started).Round(time.Millisecond), conn.Describe())
	return conn.(*tunnel)
}

func TestTunnelReachesRouterAndSandbox(t *testing.T) {
	sb := sandbox(t)
	conn := openTunnel(t, TunnelOptions{})

	assert.Check(t, is.Equal(conn.Mode(), ModeTunnel))
	assert.Check(t, strings.HasPrefix(conn.URL(), "http://127.0.0.1:"), conn.URL())
	assert.Check(t, is.Contains(conn.Describe(), "tunnel to default/sandbox-router-"))
	assert.Check(t, is.Contains(conn.Describe(), "via port-forward 127.0.0.1:"))

	code, body, err := get(conn.URL(), "/healthz")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(code, http.StatusOK), body)

	out := execute(t, conn.URL(), sb, "echo through the tunnel")
	assert.Check(t, is.Equal(out.Stdout, "through the tunnel\n"))
	assert.Check(t, is.Equal(out.ExitCode, 0))

	// Close is idempotent and stops forwarding.
	url := conn.URL()
	assert.NilError(t, conn.Close())
	assert.NilError(t, conn.Close())
	_, _, err = get(url, "/healthz")
	assert.Check(t, err != nil, "the tunnel still forwards after Close")
}

func TestTunnelHealsWhenItsPodIsDeleted(t *testing.T) {
	tc := cluster(t)
	sb := sandbox(t)
	conn := openTunnel(t, TunnelOptions{})
	before := conn.current()
	poll.WaitOn(t, healthy(conn), poll.WithTimeout(10*time.Second))

	deleted := time.Now()
	assert.NilError(t, tc.cs.CoreV1().Pods(testNS).Delete(context.Background(), before.pod, metav1.DeleteOptions{}))
	poll.WaitOn(t, func(l poll.LogT) poll.Result {
		if conn.current().pod == before.pod {
			return poll.Continue("tunnel still on deleted pod %s", before.pod)
		}
		return healthy(conn)(l)
	}, poll.WithTimeout(60*time.Second), poll.WithDelay(50*time.Millisecond))
	t.Logf("healed %s after deleting pod %s: %s", time.Since(deleted).Round(time.Millisecond), before.pod, conn.Describe())

	assert.Check(t, is.Contains(conn.Describe(), "re-established 1 time(s)"))
	out := execute(t, conn.URL(), sb, "echo healed")
	assert.Check(t, is.Equal(out.Stdout, "healed\n"))
	// Let the Deployment bring the router back to full strength for later tests.
	assert.NilError(t, tc.waitRouterPods(context.Background(), testNS, kube.RouterAppValue, routerPods, 90*time.Second))
}

// With a single router pod, healing waits for the Deployment's replacement.
func TestTunnelHealsOntoAReplacementPod(t *testing.T) {
	tc := cluster(t)
	ctx := context.Background()
	assert.NilError(t, tc.deployRouter(ctx, testNS, "solo-router", "solo-router-svc", "solo-router", 1))
	t.Cleanup(func() {
		assert.Check(t, tc.cs.AppsV1().Deployments(testNS).Delete(ctx, "solo-router", metav1.DeleteOptions{}))
		assert.Check(t, tc.cs.CoreV1().Services(testNS).Delete(ctx, "solo-router-svc", metav1.DeleteOptions{}))
	})
	// The Service's targetPort is the named port "http": Tunnel resolves it on the pod.
	conn := openTunnel(t, TunnelOptions{Service: "solo-router-svc", ReadyTimeout: 60 * time.Second})
	before := conn.current()
	assert.Check(t, is.Equal(before.podPort, 8080))
	poll.WaitOn(t, healthy(conn), poll.WithTimeout(10*time.Second))

	deleted := time.Now()
	assert.NilError(t, tc.cs.CoreV1().Pods(testNS).Delete(ctx, before.pod, metav1.DeleteOptions{}))
	poll.WaitOn(t, func(l poll.LogT) poll.Result {
		if conn.current().pod == before.pod {
			return poll.Continue("tunnel still on deleted pod %s", before.pod)
		}
		return healthy(conn)(l)
	}, poll.WithTimeout(90*time.Second), poll.WithDelay(50*time.Millisecond))
	t.Logf("healed %s after deleting the only pod %s: %s", time.Since(deleted).Round(time.Millisecond), before.pod, conn.Describe())
}

func TestTunnelHealsWhenItsConnectionIsCut(t *testing.T) {
	conn := openTunnel(t, TunnelOptions{})
	before := conn.current()
	poll.WaitOn(t, healthy(conn), poll.WithTimeout(10*time.Second))

	cut := time.Now()
	spdyConn := before.dialer.connection()
	assert.Assert(t, spdyConn != nil)
	assert.NilError(t, spdyConn.Close())
	poll.WaitOn(t, func(l poll.LogT) poll.Result {
		if conn.current() == before {
			return poll.Continue("forward not replaced yet")
		}
		return healthy(conn)(l)
	}, poll.WithTimeout(60*time.Second), poll.WithDelay(20*time.Millisecond))
	t.Logf("healed %s after the SPDY connection was cut: %s", time.Since(cut).Round(time.Millisecond), conn.Describe())

	select {
	case <-before.finished:
		assert.Check(t, is.ErrorContains(before.err, "lost connection to pod"))
	default:
		t.Error("the old forward is still running")
	}
	// The local port is reused when it is free, so the URL usually stays the same.
	t.Logf("local address before %s, after %s", before.addr, conn.current().addr)
}

func TestTunnelConcurrentUse(t *testing.T) {
	conn := openTunnel(t, TunnelOptions{})
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			code, body, err := get(conn.URL(), "/healthz")
			if err == nil && code != http.StatusOK {
				err = &httpError{code, body}
			}
			_ = conn.Describe()
			errs <- err
		}()
	}
	for range 20 {
		assert.Check(t, <-errs)
	}
}

type httpError struct {
	code int
	body string
}

func (e *httpError) Error() string { return http.StatusText(e.code) + ": " + e.body }

func TestTunnelWithoutServiceSaysHowToDeploy(t *testing.T) {
	tc := cluster(t)
	_, err := Tunnel(context.Background(), tc.cfg, TunnelOptions{Service: "no-such-svc", Log: t.Logf})
	assert.Error(t, err, "sandboxtest: no-such-svc not found in namespace default; run: sandboxtest-setup deploy --namespace default, "+
		"or set SANDBOXTEST_ROUTER_NAMESPACE to the namespace the router runs in")

	_, err = Tunnel(context.Background(), tc.cfg, TunnelOptions{Namespace: "elsewhere", Log: t.Logf})
	assert.Check(t, is.ErrorContains(err, "sandboxtest: sandbox-router-svc not found in namespace elsewhere; run: sandboxtest-setup deploy --namespace elsewhere, "+
		"or use the sandbox-router-svc in namespace default")) // and maybe routers
	assert.Check(t, errors.Is(err, ErrRouterNotFound))
}

func TestTunnelWithoutReadyPodSaysWhatItSaw(t *testing.T) {
	tc := cluster(t)
	ctx := context.Background()
	for _, svc := range []struct{ name, app string }{{"unready-svc", "unready"}, {"empty-svc", "nobody"}} {
		_, err := tc.cs.CoreV1().Services(testNS).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: svc.name, Namespace: testNS},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": svc.app},
				Ports: []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
		}, metav1.CreateOptions{})
		assert.NilError(t, err)
		t.Cleanup(func() {
			assert.Check(t, deleteIgnoringNotFound(tc.cs.CoreV1().Services(testNS).Delete(ctx, svc.name, metav1.DeleteOptions{})))
		})
	}
	// An image the process node has no runner for: the pod fails and is never Ready.
	_, err := tc.cs.CoreV1().Pods(testNS).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "unready-pod", Namespace: testNS, Labels: map[string]string{"app": "unready"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "docker.io/library/busybox:1.36"}}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	t.Cleanup(func() {
		assert.Check(t, deleteIgnoringNotFound(tc.cs.CoreV1().Pods(testNS).Delete(ctx, "unready-pod", metav1.DeleteOptions{})))
	})
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		p, err := tc.cs.CoreV1().Pods(testNS).Get(ctx, "unready-pod", metav1.GetOptions{})
		if err != nil {
			return poll.Error(err)
		}
		if p.Status.Phase != corev1.PodFailed {
			return poll.Continue("pod phase %s", p.Status.Phase)
		}
		return poll.Success()
	}, poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))

	started := time.Now()
	_, err = Tunnel(ctx, tc.cfg, TunnelOptions{Service: "unready-svc", ReadyTimeout: 2 * time.Second, Log: t.Logf})
	t.Logf("failed after %s: %v", time.Since(started).Round(time.Millisecond), err)
	noBareDeadline(t, err)
	assert.Check(t, is.ErrorContains(err, "service default/unready-svc selects no Ready pod (selector app=unready) after 2s"))
	assert.Check(t, is.ErrorContains(err, "unready-pod: Failed, is Failed"))
	assert.Check(t, is.ErrorContains(err, "NoRunner"))
	assert.Check(t, is.ErrorContains(err, "kubectl -n default describe pods -l app=unready"))

	_, err = Tunnel(ctx, tc.cfg, TunnelOptions{Service: "empty-svc", ReadyTimeout: time.Second, Log: t.Logf})
	noBareDeadline(t, err)
	assert.Check(t, is.ErrorContains(err, "service default/empty-svc selects no Ready pod (selector app=nobody) after 1s; pods seen: none (no pod matches the selector)"))

	// A Service port the Service does not have.
	_, err = Tunnel(ctx, tc.cfg, TunnelOptions{Port: 9999, Log: t.Logf})
	assert.Check(t, is.ErrorContains(err, "service default/sandbox-router-svc has no port 9999 (its ports: [8080→http])"))
}

func TestTunnelSetupCanceledNamesThePhase(t *testing.T) {
	tc := cluster(t)
	_, err := tc.cs.CoreV1().Services(testNS).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "empty-svc-canceled", Namespace: testNS},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "nobody-either"},
			Ports: []corev1.ServicePort{{Port: 8080}}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	t.Cleanup(func() {
		_ = tc.cs.CoreV1().Services(testNS).Delete(context.Background(), "empty-svc-canceled", metav1.DeleteOptions{})
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(300 * time.Millisecond); cancel() }()
	_, err = Tunnel(ctx, tc.cfg, TunnelOptions{Service: "empty-svc-canceled", Log: t.Logf})
	noBareDeadline(t, err)
	assert.Check(t, is.ErrorContains(err, "context canceled while waiting for a Ready pod (selector app=nobody-either) (last state: none (no pod matches the selector))"))
}

func TestPodPortFor(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "a", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "probe", ContainerPort: 8081}}},
	}}}
	for _, tc := range []struct {
		sp   corev1.ServicePort
		want int
		err  string
	}{
		{sp: corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(8080)}, want: 8080},
		{sp: corev1.ServicePort{Port: 8080}, want: 8080},
		{sp: corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("probe")}, want: 8081},
		{sp: corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("grpc")}, err: `targets the port named "grpc", which no container of pod ns/p declares`},
	} {
		got, err := podPortFor(tc.sp, pod)
		if tc.err != "" {
			assert.Check(t, is.ErrorContains(err, tc.err))
			continue
		}
		assert.Check(t, err)
		assert.Check(t, is.Equal(got, tc.want))
	}
}

func TestUnusable(t *testing.T) {
	now := metav1.Now()
	ready := corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue}
	notReady := corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: "containers with unready status: [router]"}
	for _, tc := range []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"ready", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{ready}}}, ""},
		{"deleting", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{ready}}}, "is being deleted"},
		{"pending", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, "is Pending"},
		{"not ready", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{notReady}}},
			"is not Ready (ContainersNotReady: containers with unready status: [router])"},
		{"no condition", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, "has no Ready condition"},
	} {
		assert.Check(t, is.Equal(unusable(&tc.pod), tc.want), tc.name)
	}
}

// TestTunnelDrainsAForwardWhosePodStopsBeingReady: a request in flight
// when its router pod stops being Ready gets its answer through the old
// forward, while the tunnel moves to another pod for new requests.
func TestTunnelDrainsAForwardWhosePodStopsBeingReady(t *testing.T) {
	tc := cluster(t)
	sb := sandbox(t)
	ctx := context.Background()
	assert.NilError(t, tc.deployRouter(ctx, testNS, "drain-router", "drain-router-svc", "drain-router", 2))
	t.Cleanup(func() {
		assert.Check(t, tc.cs.AppsV1().Deployments(testNS).Delete(ctx, "drain-router", metav1.DeleteOptions{}))
		assert.Check(t, tc.cs.CoreV1().Services(testNS).Delete(ctx, "drain-router-svc", metav1.DeleteOptions{}))
	})
	started := time.Now()
	assert.NilError(t, tc.waitRouterPods(ctx, testNS, "drain-router", 2, 90*time.Second))
	t.Logf("2 router pods Ready in %s", time.Since(started).Round(time.Millisecond))
	conn := openTunnel(t, TunnelOptions{Service: "drain-router-svc"})
	before := conn.current()
	oldURL := conn.URL()

	type answer struct {
		out string
		err error
	}
	answered := make(chan answer, 1)
	go func() { // not execute: FailNow only on the test's goroutine
		body, _ := json.Marshal(map[string]string{"command": "sh -c 'sleep 2; echo drained'"})
		req, _ := http.NewRequest(http.MethodPost, oldURL+"/execute", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Sandbox-ID", sb.name)
		req.Header.Set("X-Sandbox-Namespace", testNS)
		req.Header.Set("X-Sandbox-Port", "8888")
		req.Header.Set("X-Sandbox-Pod-IP", sb.podIP)
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var out execResult
		err = json.NewDecoder(resp.Body).Decode(&out)
		answered <- answer{out: out.Stdout, err: err}
	}()
	time.Sleep(500 * time.Millisecond) // the command runs

	// Not Ready, as a router pod whose readiness probe fails or that is
	// terminating gracefully; it still serves what it has.
	pod, err := tc.cs.CoreV1().Pods(testNS).Get(ctx, before.pod, metav1.GetOptions{})
	assert.NilError(t, err)
	for i, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			pod.Status.Conditions[i].Status = corev1.ConditionFalse
		}
	}
	_, err = tc.cs.CoreV1().Pods(testNS).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	assert.NilError(t, err)
	poll.WaitOn(t, func(l poll.LogT) poll.Result {
		if conn.current() == before {
			return poll.Continue("tunnel still on pod %s", before.pod)
		}
		return healthy(conn)(l)
	}, poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))
	assert.Check(t, conn.URL() != oldURL, "the new forward listens on the old one's port")

	select {
	case a := <-answered:
		assert.Check(t, a.err, "the request in flight got no answer")
		assert.Check(t, is.Equal(a.out, "drained\n"))
	case <-time.After(25 * time.Second):
		t.Fatal("the request in flight got no answer")
	}
	t.Logf("drained; closing after %s", time.Since(started).Round(time.Millisecond))
	out := execute(t, conn.URL(), sb, "echo new")
	assert.Check(t, is.Equal(out.Stdout, "new\n"))
}
