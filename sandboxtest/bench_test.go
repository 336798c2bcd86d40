package sandboxtest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	sdk "sigs.k8s.io/agent-sandbox/clients/go/sandbox"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	"github.com/agentsandbox/go-sandboxtest/connect"
	"github.com/agentsandbox/go-sandboxtest/sandboxtest"
)

// The benchmarks compare sandboxtest with the upstream Go SDK
// (sigs.k8s.io/agent-sandbox/clients/go/sandbox v0.5.6) doing the same
// thing on the same cluster in the same run. The SDK cannot use its tunnel
// mode on the local cluster (it reads EndpointSlices), so it runs in direct
// mode against sandboxtest's tunnel URL: both go port-forward -> router ->
// runtime. Run:
//
//	go test -run '^$' -bench . -benchtime 20x .

// benchTB is a TB for one provisioning inside a benchmark: it fails the
// benchmark, and keeps the cleanups to run outside the timed section.
type benchTB struct {
	*testing.B
	mu       sync.Mutex
	cleanups []func()
}

func (t *benchTB) Cleanup(f func())    { t.mu.Lock(); t.cleanups = append(t.cleanups, f); t.mu.Unlock() }
func (t *benchTB) Logf(string, ...any) {}
func (t *benchTB) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}

func restConfig(b *testing.B) *rest.Config {
	b.Helper()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), nil).ClientConfig()
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// routerURL is the shared tunnel's URL, the one sandboxtest itself uses.
func routerURL(b *testing.B, cfg *rest.Config) string {
	b.Helper()
	conn, _, err := connect.Shared(context.Background(), cfg, connect.AutoOptions{Namespace: "default"})
	if err != nil {
		b.Fatal(err)
	}
	return conn.URL()
}

func sdkOpen(b *testing.B, cfg *rest.Config, pool, url string) *sdk.Sandbox {
	b.Helper()
	s, err := sdk.New(context.Background(), sdk.Options{WarmPoolName: pool, Namespace: "default", RestConfig: cfg, APIURL: url, Quiet: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s
}

// warmPool makes a template with a pool of n ready sandboxes for the warm benchmarks.
func warmPool(b *testing.B, cfg *rest.Config, name string, n int32) {
	b.Helper()
	ctx := context.Background()
	ext := extclient.NewForConfigOrDie(cfg).ExtensionsV1beta1()
	tmpl := &extv1beta1.SandboxTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: extv1beta1.SandboxTemplateSpec{SandboxBlueprint: sandboxv1beta1.SandboxBlueprint{
			PodTemplate: sandboxv1beta1.PodTemplate{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "python-runtime", Image: "python-runtime-sandbox:bench", Ports: []corev1.ContainerPort{{ContainerPort: 8888}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8888)}}},
			}}}},
		}},
	}
	if _, err := ext.SandboxTemplates("default").Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	pool := &extv1beta1.SandboxWarmPool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: extv1beta1.SandboxWarmPoolSpec{Replicas: &n, TemplateRef: extv1beta1.SandboxTemplateRef{Name: name}}}
	if _, err := ext.SandboxWarmPools("default").Create(ctx, pool, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = ext.SandboxWarmPools("default").Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = ext.SandboxTemplates("default").Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	waitWarm(b, cfg, name, "warm")
}

// percentiles reports p50 and p95 of ds as metrics.
func percentiles(b *testing.B, unit string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	at := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	b.ReportMetric(float64(at(0.50).Microseconds())/1000, "p50-"+unit)
	b.ReportMetric(float64(at(0.95).Microseconds())/1000, "p95-"+unit)
}

func BenchmarkNew(b *testing.B) {
	cfg := restConfig(b)
	url := routerURL(b, cfg)
	for _, pool := range []string{"cold", "warm"} {
		template := "python-sandbox-template"
		if pool == "warm" {
			template = "bench-warm"
			warmPool(b, cfg, template, 3)
		}
		b.Run(pool+"/sandboxtest", func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				t := &benchTB{B: b}
				start := time.Now()
				sandboxtest.New(t, template)
				lat = append(lat, time.Since(start))
				b.StopTimer()
				t.cleanup()
				waitWarm(b, cfg, template, pool)
				b.StartTimer()
			}
			percentiles(b, "ms", lat)
		})
		b.Run(pool+"/upstream-sdk", func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				start := time.Now()
				s := sdkOpen(b, cfg, template, url)
				lat = append(lat, time.Since(start))
				b.StopTimer()
				_ = s.Close(context.Background())
				waitWarm(b, cfg, template, pool)
				b.StartTimer()
			}
			percentiles(b, "ms", lat)
		})
	}
}

// waitWarm lets a warm pool refill before the next timed claim.
func waitWarm(b *testing.B, cfg *rest.Config, pool, kind string) {
	if kind != "warm" {
		return
	}
	ext := extclient.NewForConfigOrDie(cfg).ExtensionsV1beta1()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		p, err := ext.SandboxWarmPools("default").Get(context.Background(), pool, metav1.GetOptions{})
		if err == nil && p.Spec.Replicas != nil && p.Status.ReadyReplicas >= *p.Spec.Replicas {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("warm pool %s did not refill", pool)
}

func BenchmarkRunTrue(b *testing.B) {
	cfg := restConfig(b)
	url := routerURL(b, cfg)
	b.Run("sandboxtest", func(b *testing.B) {
		t := &benchTB{B: b}
		defer t.cleanup()
		sb := sandboxtest.New(t, "python-sandbox-template")
		var lat []time.Duration
		for b.Loop() {
			start := time.Now()
			if _, err := sb.RunE(context.Background(), "true"); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		percentiles(b, "ms", lat)
	})
	b.Run("upstream-sdk", func(b *testing.B) {
		s := sdkOpen(b, cfg, "python-sandbox-template", url)
		defer s.Close(context.Background())
		var lat []time.Duration
		for b.Loop() {
			start := time.Now()
			if _, err := s.Run(context.Background(), "true"); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		percentiles(b, "ms", lat)
	})
}

func BenchmarkWriteRead10MB(b *testing.B) {
	cfg := restConfig(b)
	url := routerURL(b, cfg)
	data := make([]byte, 10<<20)
	_, _ = rand.Read(data)
	b.Run("sandboxtest", func(b *testing.B) {
		t := &benchTB{B: b}
		defer t.cleanup()
		sb := sandboxtest.New(t, "python-sandbox-template")
		b.SetBytes(2 * int64(len(data)))
		for b.Loop() {
			if err := sb.WriteFileE(context.Background(), "blob", data); err != nil {
				b.Fatal(err)
			}
			got, err := sb.ReadFileE(context.Background(), "blob")
			if err != nil || !bytes.Equal(got, data) {
				b.Fatalf("read back %d bytes, err %v", len(got), err)
			}
		}
	})
	b.Run("upstream-sdk", func(b *testing.B) {
		s := sdkOpen(b, cfg, "python-sandbox-template", url)
		defer s.Close(context.Background())
		b.SetBytes(2 * int64(len(data)))
		for b.Loop() {
			if err := s.Write(context.Background(), "blob", data); err != nil {
				b.Fatal(err)
			}
			got, err := s.Read(context.Background(), "blob")
			if err != nil || !bytes.Equal(got, data) {
				b.Fatalf("read back %d bytes, err %v", len(got), err)
			}
		}
	})
}

// BenchmarkParallel20 provisions 20 sandboxes at once, runs a command in
// each and deletes them: the shape of a package of 20 parallel tests.
func BenchmarkParallel20(b *testing.B) {
	cfg := restConfig(b)
	url := routerURL(b, cfg)
	run := func(b *testing.B, one func(i int) func()) {
		for b.Loop() {
			var wg sync.WaitGroup
			cleanups := make([]func(), 20)
			for i := range 20 {
				wg.Add(1)
				go func() { defer wg.Done(); cleanups[i] = one(i) }()
			}
			wg.Wait()
			b.StopTimer()
			for _, c := range cleanups {
				c()
			}
			b.StartTimer()
		}
	}
	b.Run("sandboxtest", func(b *testing.B) {
		run(b, func(i int) func() {
			t := &benchTB{B: b}
			sb := sandboxtest.New(t, "python-sandbox-template")
			if _, err := sb.RunE(context.Background(), fmt.Sprintf("echo %d", i)); err != nil {
				b.Error(err)
			}
			return t.cleanup
		})
	})
	b.Run("upstream-sdk", func(b *testing.B) {
		run(b, func(i int) func() {
			s := sdkOpen(b, cfg, "python-sandbox-template", url)
			if _, err := s.Run(context.Background(), fmt.Sprintf("echo %d", i)); err != nil {
				b.Error(err)
			}
			return func() { _ = s.Close(context.Background()) }
		})
	})
}
