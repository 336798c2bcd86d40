package connect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	"gotest.tools/v3/poll"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/localserve"
	"github.com/agentsandbox/go-sandboxtest/internal/setupbin"
)

const (
	routerImage  = "registry.k8s.io/agent-sandbox/sandbox-router-go:v1.0.0"
	runtimeImage = "us-central1-docker.pkg.dev/k8s-staging-images/agent-sandbox/python-runtime-sandbox:latest-main"
	testNS       = "default"
	templateName = "python-sandbox-template"
	routerPods   = 2
)

// The one local cluster of this test binary: started by the first test that
// needs it, stopped by TestMain.
var (
	clusterOnce sync.Once
	clusterDir  string
	theCluster  *testCluster
	clusterErr  error
)

type testCluster struct {
	c   *localserve.Server // a child process: this binary does not link the cluster
	cfg *rest.Config
	cs  kubernetes.Interface
	gw  gwclient.Interface
	ext extclient.Interface
}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := CloseShared(); err != nil {
		fmt.Fprintf(os.Stderr, "closing shared connections: %v\n", err)
	}
	if theCluster != nil {
		if err := theCluster.c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the local cluster: %v\n", err)
		}
	}
	if clusterDir != "" {
		removeDir(clusterDir)
	}
	os.Exit(code)
}

// removeDir removes the cluster's directory, retrying while exiting
// processes may still write into it.
func removeDir(dir string) {
	var err error
	for range 20 {
		if err = os.RemoveAll(dir); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "removing %s: %v\n", dir, err)
}

// cluster returns the shared local cluster with the router deployed (Deployment
// sandbox-router, Service sandbox-router-svc) and a python runtime template.
func cluster(t *testing.T) *testCluster {
	t.Helper()
	clusterOnce.Do(func() { theCluster, clusterErr = startCluster() })
	if clusterErr != nil {
		t.Fatalf("local cluster: %v", clusterErr)
	}
	return theCluster
}

func startCluster() (*testCluster, error) {
	ctx := context.Background()
	var err error
	clusterDir, err = os.MkdirTemp("", "connect-test-")
	if err != nil {
		return nil, err
	}
	started := time.Now()
	setup, err := setupbin.Ensure(ctx, setupbin.Options{Log: os.Stderr})
	if err != nil {
		return nil, err
	}
	c, err := localserve.Start(ctx, localserve.Options{Setup: setup, Dir: clusterDir, Log: os.Stderr, Waiting: os.Stderr})
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		c.Stop()
		return nil, err
	}
	tc := &testCluster{c: c, cfg: cfg,
		cs:  kubernetes.NewForConfigOrDie(cfg),
		gw:  gwclient.NewForConfigOrDie(cfg),
		ext: extclient.NewForConfigOrDie(cfg),
	}
	theCluster = tc // so TestMain stops it even if the rest fails
	if err := tc.deployRouter(ctx, testNS, kube.RouterDeployment, kube.RouterService, kube.RouterAppValue, routerPods); err != nil {
		return nil, err
	}
	tmpl, pool := templateAndPool(templateName, runtimeImage)
	if _, err := tc.ext.ExtensionsV1beta1().SandboxTemplates(testNS).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := tc.ext.ExtensionsV1beta1().SandboxWarmPools(testNS).Create(ctx, pool, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if err := tc.waitRouterPods(ctx, testNS, kube.RouterAppValue, routerPods, 90*time.Second); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "connect test: cluster with %d Ready router pods in %s\n", routerPods, time.Since(started).Round(time.Millisecond))
	return tc, nil
}

// deployRouter creates a router Deployment (pods labelled app=<app>) and its Service in ns.
func (tc *testCluster) deployRouter(ctx context.Context, ns, name, service, app string, replicas int32) error {
	if _, err := tc.cs.AppsV1().Deployments(ns).Create(ctx, routerDeployment(ns, name, app, replicas), metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := tc.cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: service, Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{kube.RouterAppLabel: app},
			Ports: []corev1.ServicePort{{Name: "http", Port: kube.RouterPort, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	return err
}

// waitRouterPods waits until n pods labelled app=<app> are Ready in ns.
func (tc *testCluster) waitRouterPods(ctx context.Context, ns, app string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		pods, err := tc.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.RouterAppLabel + "=" + app})
		if err != nil {
			last = err.Error()
		} else {
			ready := 0
			for i := range pods.Items {
				if unusable(&pods.Items[i]) == "" {
					ready++
				}
			}
			if ready >= n {
				return nil
			}
			last = podStates(pods.Items)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("fewer than %d Ready pods labelled app=%s after %s: %s", n, app, timeout, last)
}

// routerDeployment runs the router image, Ready when its /readyz answers.
func routerDeployment(ns, name, app string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{kube.RouterAppLabel: app}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "router", Image: routerImage,
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: kube.RouterPort}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
						HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(kube.RouterProbePort)},
					}},
				}}},
			},
		},
	}
}

func templateAndPool(name, image string) (*extv1beta1.SandboxTemplate, *extv1beta1.SandboxWarmPool) {
	tmpl := &extv1beta1.SandboxTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
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
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
		Spec:       extv1beta1.SandboxWarmPoolSpec{Replicas: new(int32), TemplateRef: extv1beta1.SandboxTemplateRef{Name: name}},
	}
	return tmpl, pool
}

// sandboxTarget is what the router headers name.
type sandboxTarget struct{ name, podIP string }

var (
	sandboxOnce sync.Once
	theSandbox  sandboxTarget
	sandboxErr  error
)

// sandbox claims one sandbox from the python runtime template (once per binary).
func sandbox(t *testing.T) sandboxTarget {
	t.Helper()
	tc := cluster(t)
	sandboxOnce.Do(func() { theSandbox, sandboxErr = tc.claimSandbox(context.Background()) })
	if sandboxErr != nil {
		t.Fatalf("sandbox: %v", sandboxErr)
	}
	return theSandbox
}

func (tc *testCluster) claimSandbox(ctx context.Context) (sandboxTarget, error) {
	claims := tc.ext.ExtensionsV1beta1().SandboxClaims(testNS)
	c, err := claims.Create(ctx, &extv1beta1.SandboxClaim{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "connect-test-", Namespace: testNS},
		Spec:       extv1beta1.SandboxClaimSpec{WarmPoolRef: extv1beta1.SandboxWarmPoolRef{Name: templateName}},
	}, metav1.CreateOptions{})
	if err != nil {
		return sandboxTarget{}, err
	}
	deadline := time.Now().Add(90 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		c, err = claims.Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return sandboxTarget{}, err
		}
		last = fmt.Sprintf("%+v", c.Status.Conditions)
		for _, cond := range c.Status.Conditions {
			if cond.Type == "Ready" && cond.Status == metav1.ConditionTrue && c.Status.SandboxStatus.Name != "" {
				pod, err := tc.cs.CoreV1().Pods(testNS).Get(ctx, c.Status.SandboxStatus.Name, metav1.GetOptions{})
				if err != nil {
					return sandboxTarget{}, err
				}
				return sandboxTarget{name: c.Status.SandboxStatus.Name, podIP: pod.Status.PodIP}, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return sandboxTarget{}, fmt.Errorf("claim %s not Ready after 90s: %s", c.Name, last)
}

// get is a GET on base+path with a fresh connection; it returns the status and body.
func get(base, path string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(base + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// healthy is a poll check: GET /healthz through the connection answers 200.
func healthy(conn Conn) poll.Check {
	return func(poll.LogT) poll.Result {
		code, body, err := get(conn.URL(), "/healthz")
		if err != nil {
			return poll.Continue("GET %s/healthz: %v (%s)", conn.URL(), err, conn.Describe())
		}
		if code != http.StatusOK {
			return poll.Continue("GET %s/healthz: %d %s", conn.URL(), code, body)
		}
		return poll.Success()
	}
}

type execResult struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode int    `json:"exit_code"`
}

// execute runs a command in the sandbox through the router at base.
func execute(t *testing.T, base string, sb sandboxTarget, command string) execResult {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"command": command})
	req, err := http.NewRequest(http.MethodPost, base+"/execute", bytes.NewReader(body))
	assert.NilError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Sandbox-ID", sb.name)
	req.Header.Set("X-Sandbox-Namespace", testNS)
	req.Header.Set("X-Sandbox-Port", "8888")
	req.Header.Set("X-Sandbox-Pod-IP", sb.podIP)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	assert.NilError(t, err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	assert.Equal(t, resp.StatusCode, http.StatusOK, string(data))
	var out execResult
	assert.NilError(t, json.Unmarshal(data, &out), string(data))
	return out
}

// env is a fake environment for Choose.
type env map[string]string

func (e env) get(k string) string { return e[k] }

func deleteIgnoringNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func noBareDeadline(t *testing.T, err error) {
	t.Helper()
	assert.Assert(t, err != nil)
	msg := err.Error()
	assert.Assert(t, !strings.HasSuffix(msg, "context deadline exceeded"), "bare deadline error: %s", msg)
	assert.Assert(t, msg != context.DeadlineExceeded.Error())
}
