package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	sandboxclient "sigs.k8s.io/agent-sandbox/clients/k8s/clientset/versioned"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
)

// progress is where tests print build and start-up progress: stderr, so it
// shows while the test runs (a cold build takes minutes).
var progress io.Writer = os.Stderr

func TestControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	// Build (or find) the binaries first so the start-up time below is the
	// cached case.
	b := &Builder{Log: progress}
	bins, err := b.Ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	start := time.Now()
	cp, err := StartControlPlane(ctx, Options{Dir: dir, Log: progress, Builder: b})
	if err != nil {
		t.Fatal(err)
	}
	startTime := time.Since(start)
	t.Logf("StartControlPlane with cached binaries took %s", startTime.Round(10*time.Millisecond))
	stopped := false
	defer func() {
		if !stopped {
			cp.Stop()
		}
	}()
	for name, p := range bins {
		if cp.Binaries[name] != p {
			t.Errorf("Binaries[%s] = %q, want %q", name, cp.Binaries[name], p)
		}
	}

	// /readyz through the RESTConfig.
	cs, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil || string(body) != "ok" {
		t.Fatalf("/readyz = %q, %v", body, err)
	}

	// The kubeconfig file works on its own and names everything sandboxtest-local.
	raw, err := clientcmd.LoadFromFile(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if raw.CurrentContext != KubeconfigName || raw.Contexts[KubeconfigName] == nil ||
		raw.Clusters[KubeconfigName] == nil || raw.AuthInfos[KubeconfigName] == nil {
		t.Fatalf("kubeconfig names: current %q, contexts %v", raw.CurrentContext, raw.Contexts)
	}
	kc, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kcs, err := kubernetes.NewForConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kcs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Fatalf("kubeconfig client: %v", err)
	}

	// CRDs exist and are Established; agent-sandbox ones convert with None.
	ax, err := apiextensionsclient.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"sandboxes.agents.x-k8s.io",
		"sandboxclaims.extensions.agents.x-k8s.io",
		"sandboxtemplates.extensions.agents.x-k8s.io",
		"sandboxwarmpools.extensions.agents.x-k8s.io",
		"gateways.gateway.networking.k8s.io",
		"httproutes.gateway.networking.k8s.io",
		"gatewayclasses.gateway.networking.k8s.io",
	} {
		crd, err := ax.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("CRD %s: %v", name, err)
			continue
		}
		if !crdEstablished(crd) {
			t.Errorf("CRD %s not Established", name)
		}
		if strings.HasSuffix(name, "agents.x-k8s.io") &&
			(crd.Spec.Conversion == nil || crd.Spec.Conversion.Strategy != apiextensionsv1.NoneConverter) {
			t.Errorf("CRD %s conversion = %+v, want None", name, crd.Spec.Conversion)
		}
	}

	if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("default ServiceAccount: %v", err)
	}

	testClaimMakesSandboxAndPod(ctx, t, cp)
	t.Run("kube-scheduler runs in kube-controller-manager's process", func(t *testing.T) {
		if cp.proc(compScheduler) != nil {
			t.Errorf("a kube-scheduler process was started beside kube-controller-manager")
		}
		// It starts once the controller manager runs its controllers, the
		// service account controller among them: started together, the
		// two set up the process's logging at once and could crash it.
		log := cp.LogTail(compKCM, 100000)
		sched := strings.Index(log, "Starting Kubernetes Scheduler")
		sa := strings.Index(log, "Starting service account controller")
		if sched < 0 || sa < 0 {
			t.Fatalf("kube-controller-manager's log does not show the scheduler (at %d) and the service account controller (at %d) starting:\n%s", sched, sa, cp.LogTail(compKCM, 30))
		}
		if sched < sa {
			t.Errorf("the scheduler started before the controller manager's service account controller")
		}
	})
	t.Run("etcd refuses strangers", func(t *testing.T) { testEtcdRefusesStrangers(ctx, t, cp) })
	t.Run("kube-apiserver verifies kubelets", func(t *testing.T) { testAPIServerVerifiesKubelets(ctx, t, cp) })
	t.Run("watch caches for pods and custom resources only", func(t *testing.T) { testWatchCaches(ctx, t, cp) })

	// Stop leaves no process and frees every port.
	cp.mu.Lock()
	var pids []int
	for _, p := range cp.procs {
		pids = append(pids, p.Pid())
	}
	ports := append([]int(nil), cp.ports...)
	cp.mu.Unlock()
	if len(pids) != 4 {
		t.Errorf("%d processes, want 4 (etcd, apiserver, controller-manager with the scheduler, agent-sandbox-controller)", len(pids))
	}
	stopStart := time.Now()
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	t.Logf("Stop took %s", time.Since(stopStart).Round(10*time.Millisecond))
	for _, pid := range pids {
		if pidAlive(pid) {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
	if left := processesUsing(dir); len(left) > 0 {
		t.Errorf("processes still using %s: %v", dir, left)
	}
	for _, port := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Errorf("port %d still in use after Stop: %v", port, err)
			continue
		}
		l.Close()
	}
	if err := cp.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func testClaimMakesSandboxAndPod(ctx context.Context, t *testing.T, cp *ControlPlane) {
	const ns = "default"
	ext, err := extclient.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	sbx, err := sandboxclient.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tmpl := &extv1beta1.SandboxTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "tmpl"},
		Spec: extv1beta1.SandboxTemplateSpec{
			SandboxBlueprint: sandboxv1beta1.SandboxBlueprint{
				PodTemplate: sandboxv1beta1.PodTemplate{
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "example.invalid/sandbox:1"}}},
				},
			},
		},
	}
	if _, err := ext.ExtensionsV1beta1().SandboxTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	zero := int32(0)
	pool := &extv1beta1.SandboxWarmPool{
		ObjectMeta: metav1.ObjectMeta{Name: "pool"},
		Spec: extv1beta1.SandboxWarmPoolSpec{
			Replicas:    &zero,
			TemplateRef: extv1beta1.SandboxTemplateRef{Name: "tmpl"},
		},
	}
	if _, err := ext.ExtensionsV1beta1().SandboxWarmPools(ns).Create(ctx, pool, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	claim := &extv1beta1.SandboxClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "claim"},
		Spec:       extv1beta1.SandboxClaimSpec{WarmPoolRef: extv1beta1.SandboxWarmPoolRef{Name: "pool"}},
	}
	if _, err := ext.ExtensionsV1beta1().SandboxClaims(ns).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(10 * time.Second)
	var sandbox *sandboxv1beta1.Sandbox
	var pod *corev1.Pod
	for {
		if sandbox == nil {
			l, err := sbx.AgentsV1beta1().Sandboxes(ns).List(ctx, metav1.ListOptions{})
			if err == nil && len(l.Items) > 0 {
				sandbox = &l.Items[0]
				t.Logf("Sandbox %s after %s", sandbox.Name, time.Since(start).Round(time.Millisecond))
			}
		}
		if sandbox != nil && pod == nil {
			l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err == nil && len(l.Items) > 0 {
				pod = &l.Items[0]
				t.Logf("Pod %s (%s) after %s", pod.Name, pod.Status.Phase, time.Since(start).Round(time.Millisecond))
			}
		}
		if pod != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("claim made sandbox %v, pod %v within 10s; controller log:\n%s", sandbox != nil, pod != nil, cp.LogTail(BinController, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pod.Name != sandbox.Name {
		t.Errorf("pod %s, sandbox %s: want the same name", pod.Name, sandbox.Name)
	}
	if pod.Status.Phase != corev1.PodPending {
		t.Errorf("pod phase %s, want Pending (there is no node)", pod.Status.Phase)
	}
	if pod.Spec.ServiceAccountName != "default" {
		t.Errorf("pod service account %q", pod.Spec.ServiceAccountName)
	}

	// The scheduler looks at the pod and finds no node.
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil && podUnschedulable(p) {
			t.Logf("pod marked Unschedulable by the scheduler after %s", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod not marked Unschedulable within 10s; scheduler log:\n%s", cp.LogTail(BinScheduler, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func podUnschedulable(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return true
		}
	}
	return false
}

func TestStartControlPlaneMissingBinaries(t *testing.T) {
	dir := t.TempDir()
	bin := t.TempDir()
	writeScript(t, bin, BinEtcd, "exit 0")
	_, err := StartControlPlane(context.Background(), Options{Dir: dir, Builder: &Builder{BinDir: bin}})
	if err == nil {
		t.Fatal("no error")
	}
	t.Log(err)
	for _, want := range []string{bin, "lacks", BinKubeAPIServer, BinController, BinScheduler} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), BinEtcd+",") {
		t.Errorf("error names etcd, which is present: %v", err)
	}
}

// One executable under both names runs the scheduler in the controller
// manager's process; two files (upstream's binaries) run as two processes.
func TestSchedulerInKCM(t *testing.T) {
	dir := t.TempDir()
	kcm := filepath.Join(dir, BinControllerManager)
	writeScript(t, dir, BinControllerManager, "exit 0")
	c := &ControlPlane{Binaries: map[string]string{compKCM: kcm, compScheduler: filepath.Join(dir, BinScheduler)}}
	if c.schedulerInKCM() {
		t.Error("in one process when kube-scheduler is missing")
	}
	writeScript(t, dir, BinScheduler, "exit 0")
	if c.schedulerInKCM() {
		t.Error("in one process when they are two files")
	}
	if err := os.Remove(c.Binaries[compScheduler]); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(kcm, c.Binaries[compScheduler]); err != nil {
		t.Fatal(err)
	}
	if !c.schedulerInKCM() {
		t.Error("two processes when both names link one executable")
	}
}

func TestStartControlPlaneNeedsDir(t *testing.T) {
	if _, err := StartControlPlane(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "Dir") {
		t.Fatalf("err = %v", err)
	}
}

// fakeBinDir holds the real etcd and fake scripts for everything else; the
// kube-apiserver fake runs script.
func fakeBinDir(t *testing.T, apiserverScript string) string {
	t.Helper()
	bins, err := (&Builder{Log: progress}).Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(bins[BinEtcd], filepath.Join(bin, BinEtcd)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{BinControllerManager, BinScheduler, BinController, BinRouter, BinSandboxd} {
		writeScript(t, bin, name, "echo should not run; exit 1")
	}
	writeScript(t, bin, BinKubeAPIServer, apiserverScript)
	return bin
}

func writeScript(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestStartControlPlaneComponentExits(t *testing.T) {
	dir := t.TempDir()
	bin := fakeBinDir(t, `echo "fake apiserver starting with $# args"; echo "Error: fake apiserver refuses to start" >&2; exit 3`)
	start := time.Now()
	_, err := StartControlPlane(context.Background(), Options{Dir: dir, Builder: &Builder{BinDir: bin}, StartTimeout: 30 * time.Second})
	if err == nil {
		t.Fatal("no error")
	}
	t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
	for _, want := range []string{"starting kube-apiserver", "exit status 3", "fake apiserver refuses to start", "fake apiserver starting with", "last 20 lines"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("an exited component should fail at once, took %s", time.Since(start))
	}
	if left := processesUsing(dir); len(left) > 0 {
		t.Errorf("processes left running: %v", left)
	}
}

func TestStartControlPlaneStepTimeout(t *testing.T) {
	dir := t.TempDir()
	bin := fakeBinDir(t, `echo "fake apiserver line 1"; echo "fake apiserver hangs"; exec sleep 600`)
	start := time.Now()
	_, err := StartControlPlane(context.Background(), Options{Dir: dir, Builder: &Builder{BinDir: bin}, StartTimeout: 2 * time.Second})
	if err == nil {
		t.Fatal("no error")
	}
	t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
	for _, want := range []string{"starting kube-apiserver", "timeout", "fake apiserver hangs", "fake apiserver line 1", "kube-apiserver.log"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error wraps a bare context deadline: %v", err)
	}
	if left := processesUsing(dir); len(left) > 0 {
		t.Errorf("processes left running: %v", left)
	}
}

// pidAlive reports whether pid runs (zombies count as gone).
func pidAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// processesUsing lists live processes whose command line or working
// directory mentions dir.
func processesUsing(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !pidAlive(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if strings.Contains(string(cmdline), dir) || strings.HasPrefix(cwd, dir) {
			out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return out
}

func TestStartControlPlanePortTakenRetries(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(t.TempDir(), "count")
	bin := fakeBinDir(t, `echo x >> `+count+`; echo "listen tcp 127.0.0.1:1: bind: address already in use" >&2; exit 1`)
	_, err := StartControlPlane(context.Background(), Options{Dir: dir, Builder: &Builder{BinDir: bin}, StartTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err = %v", err)
	}
	b, _ := os.ReadFile(count)
	if n := strings.Count(string(b), "x"); n != 3 {
		t.Errorf("kube-apiserver started %d times, want 3", n)
	}
	if left := processesUsing(dir); len(left) > 0 {
		t.Errorf("processes left running: %v", left)
	}
}

func TestStartControlPlaneCancelled(t *testing.T) {
	dir := t.TempDir()
	bin := fakeBinDir(t, `echo "fake apiserver hangs"; exec sleep 600`)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := StartControlPlane(ctx, Options{Dir: dir, Builder: &Builder{BinDir: bin}})
	if err == nil {
		t.Fatal("no error")
	}
	t.Log(err)
	for _, want := range []string{"starting kube-apiserver", "interrupted", "fake apiserver hangs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if left := processesUsing(dir); len(left) > 0 {
		t.Errorf("processes left running: %v", left)
	}
}
