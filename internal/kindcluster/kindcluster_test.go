package kindcluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kind != "Cluster" || cfg.APIVersion != "kind.x-k8s.io/v1alpha4" {
		t.Errorf("type meta = %+v, want kind Cluster, apiVersion kind.x-k8s.io/v1alpha4", cfg.TypeMeta)
	}
	if cfg.Name != DefaultName {
		t.Errorf("name = %q, want %q", cfg.Name, DefaultName)
	}
	if len(cfg.Nodes) != 1 {
		t.Fatalf("nodes = %+v, want one control-plane node", cfg.Nodes)
	}
	if n := cfg.Nodes[0]; n.Role != v1alpha4.ControlPlaneRole || n.Image != DefaultNodeImage {
		t.Errorf("node = role %q image %q, want role %q image %q", n.Role, n.Image, v1alpha4.ControlPlaneRole, DefaultNodeImage)
	}
	if !strings.HasPrefix(DefaultNodeImage, "kindest/node:v") {
		t.Errorf("DefaultNodeImage = %q, want a kindest/node image", DefaultNodeImage)
	}
	// Networking keeps kind's defaults: its CNI (kindnet, which enforces
	// NetworkPolicy) and kube-proxy stay on.
	if cfg.Networking.DisableDefaultCNI {
		t.Error("the default CNI is disabled; sandbox templates need kindnet's NetworkPolicy enforcement")
	}
	if cfg.Networking.KubeProxyMode != v1alpha4.IPTablesProxyMode {
		t.Errorf("kube-proxy mode = %q, want kind's default, iptables", cfg.Networking.KubeProxyMode)
	}
	if cfg.Networking.PodSubnet == "" || cfg.Networking.ServiceSubnet == "" {
		t.Errorf("networking defaults not applied: %+v", cfg.Networking)
	}
}

func TestConfigAdmissionPluginPatch(t *testing.T) {
	cfg, err := Config(Options{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.KubeadmConfigPatches) != 1 {
		t.Fatalf("kubeadmConfigPatches = %q, want one ClusterConfiguration patch", cfg.KubeadmConfigPatches)
	}
	var patch struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
		APIServer  struct {
			ExtraArgs map[string]string `json:"extraArgs"`
		} `json:"apiServer"`
	}
	if err := yaml.UnmarshalStrict([]byte(cfg.KubeadmConfigPatches[0]), &patch); err != nil {
		t.Fatalf("the patch is not valid YAML of the expected shape: %v\n%s", err, cfg.KubeadmConfigPatches[0])
	}
	if patch.Kind != "ClusterConfiguration" {
		t.Errorf("patch kind = %q, want ClusterConfiguration", patch.Kind)
	}
	if patch.APIVersion != "" {
		t.Errorf("patch apiVersion = %q; without one kind applies it to kubeadm v1beta3 and v1beta4 alike", patch.APIVersion)
	}
	plugins := strings.Split(patch.APIServer.ExtraArgs["enable-admission-plugins"], ",")
	for _, want := range []string{"NodeRestriction", "OwnerReferencesPermissionEnforcement"} {
		found := false
		for _, p := range plugins {
			found = found || strings.TrimSpace(p) == want
		}
		if !found {
			t.Errorf("enable-admission-plugins = %q lacks %s", plugins, want)
		}
	}

	// The whole config survives a YAML round trip (what a kind config file holds).
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var back v1alpha4.Cluster
	if err := yaml.UnmarshalStrict(raw, &back); err != nil {
		t.Fatalf("config YAML does not parse back: %v\n%s", err, raw)
	}
	if len(back.KubeadmConfigPatches) != 1 || back.KubeadmConfigPatches[0] != cfg.KubeadmConfigPatches[0] || back.Nodes[0].Image != cfg.Nodes[0].Image {
		t.Errorf("round trip changed the config:\n%s", raw)
	}
}

func TestNodeImage(t *testing.T) {
	for _, tc := range []struct {
		opts    Options
		want    string
		wantErr string
	}{
		{opts: Options{}, want: DefaultNodeImage},
		{opts: Options{KubernetesVersion: "v1.33.1"}, want: "kindest/node:v1.33.1"},
		{opts: Options{KubernetesVersion: "1.33.1"}, want: "kindest/node:v1.33.1"},
		{opts: Options{NodeImage: "example.com/node:mine"}, want: "example.com/node:mine"},
		{opts: Options{NodeImage: "example.com/node:mine", KubernetesVersion: "v1.33.1"}, wantErr: "set one of them"},
		{opts: Options{KubernetesVersion: "1.33"}, wantErr: "not of the form v1.33.1"},
		{opts: Options{KubernetesVersion: "latest"}, wantErr: "not of the form v1.33.1"},
	} {
		got, err := NodeImage(tc.opts)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("NodeImage(%+v) = %q, %v; want an error containing %q", tc.opts, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NodeImage(%+v) = %q, %v; want %q", tc.opts, got, err, tc.want)
		}
		cfg, err := Config(tc.opts)
		if err != nil || cfg.Nodes[0].Image != tc.want {
			t.Errorf("Config(%+v) node image = %v, %v; want %q", tc.opts, cfg, err, tc.want)
		}
	}
	if _, err := Config(Options{NodeImage: "a", KubernetesVersion: "v1.33.1"}); err == nil {
		t.Error("Config with both a node image and a Kubernetes version: no error")
	}
}

func TestContextName(t *testing.T) {
	if got := ContextName("dev"); got != "kind-dev" {
		t.Errorf("ContextName(dev) = %q", got)
	}
	if got := ContextName(""); got != "kind-"+DefaultName {
		t.Errorf("ContextName(\"\") = %q", got)
	}
}

func TestKubeconfigPath(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("KUBECONFIG", "")
	if got, want := KubeconfigPath(""), filepath.Join(dir, ".kube", "config"); got != want {
		t.Errorf("no $KUBECONFIG: %q, want %q", got, want)
	}
	if got := KubeconfigPath("/x/kc"); got != "/x/kc" {
		t.Errorf("explicit: %q", got)
	}
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	t.Setenv("KUBECONFIG", a+string(filepath.ListSeparator)+b)
	if got := KubeconfigPath(""); got != b {
		t.Errorf("no file of $KUBECONFIG exists: %q, want the last, %q", got, b)
	}
	if err := os.WriteFile(b, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := KubeconfigPath(""); got != b {
		t.Errorf("second file exists: %q, want %q", got, b)
	}
	if err := os.WriteFile(a, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := KubeconfigPath(""); got != a {
		t.Errorf("both exist: %q, want the first, %q", got, a)
	}
}

// isolate points HOME and KUBECONFIG at fresh directories and returns them.
func isolate(t *testing.T) (home, explicit string) {
	t.Helper()
	home = t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KIND_EXPERIMENTAL_PROVIDER", "")
	return home, filepath.Join(t.TempDir(), "kubeconfig")
}

// skipIfRuntime skips when a container runtime answers: then Create would
// really create a cluster, which these tests must not do.
func skipIfRuntime(t *testing.T) {
	t.Helper()
	if rt, err := detectRuntime(context.Background()); err == nil {
		t.Skipf("the %s container runtime answers here; this test checks the no-runtime error", rt.name)
	}
}

func assertNoRuntimeError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrNoRuntime) {
		t.Fatalf("error = %v, want one wrapping ErrNoRuntime", err)
	}
	msg := err.Error()
	for _, want := range []string{"docker", "podman", "nerdctl", "https://docs.docker.com/engine/install/", "sandboxtest-setup local up"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not mention %q:\n%s", want, msg)
		}
	}
}

func assertNothingWritten(t *testing.T, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range entries {
			t.Errorf("%s was written", filepath.Join(dir, e.Name()))
		}
	}
}

// TestCreateWithoutRuntime runs on this machine's PATH: with no runtime that
// answers, Create fails at once with the explanation and writes nothing.
func TestCreateWithoutRuntime(t *testing.T) {
	skipIfRuntime(t)
	home, explicit := isolate(t)
	for _, kc := range []string{explicit, ""} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var log bytes.Buffer
		start := time.Now()
		err := Create(ctx, Options{Kubeconfig: kc, Wait: time.Second, Log: &log})
		cancel()
		t.Logf("Create(kubeconfig %q) returned after %s:\n%v", kc, time.Since(start), err)
		assertNoRuntimeError(t, err)
		if _, lookErr := exec.LookPath("docker"); lookErr == nil && !strings.Contains(err.Error(), "no engine answers") {
			t.Errorf("a docker client is installed, but the error does not say that no engine answers it:\n%v", err)
		}
	}
	assertNothingWritten(t, home, filepath.Dir(explicit))
}

func TestDeleteWithoutRuntime(t *testing.T) {
	skipIfRuntime(t)
	home, explicit := isolate(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := Delete(ctx, Options{Name: "nothing-here", Kubeconfig: explicit})
	assertNoRuntimeError(t, err)
	assertNothingWritten(t, home, filepath.Dir(explicit))
}

// fakeBin writes an executable shell script called name into dir.
func fakeBin(t *testing.T, dir, name, script string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
}

const (
	dockerClientOnly = `case "$1" in
-v|--version) echo "Docker version 28.2.2, build e6534b4" ;;
info) echo; echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2; exit 1 ;;
esac
`
	dockerAnswering = `case "$1" in
-v|--version) echo "Docker version 28.2.2, build e6534b4" ;;
info) echo 28.2.2 ;;
esac
`
	podmanAnswering = `case "$1" in
-v|--version) echo "podman version 5.4.0" ;;
info) echo 5.4.0 ;;
esac
`
)

// TestDetectRuntime checks detection against fake clients on an isolated PATH.
func TestDetectRuntime(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("fake clients are shell scripts")
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		bins     map[string]string
		forced   string
		want     string   // runtime chosen, or "" for an error
		wantMsgs []string // in the error
	}{
		{
			name:     "nothing installed",
			wantMsgs: []string{"docker: not found on PATH", "nerdctl: not found on PATH", "podman: not found on PATH", "sandboxtest-setup local up"},
		},
		{
			name: "docker client without engine",
			bins: map[string]string{"docker": dockerClientOnly},
			wantMsgs: []string{
				"/docker is installed, but no engine answers it",
				"Cannot connect to the Docker daemon at unix:///var/run/docker.sock",
				"sudo systemctl start docker", "podman: not found on PATH", "sandboxtest-setup local up",
			},
		},
		{name: "docker answering", bins: map[string]string{"docker": dockerAnswering}, want: "docker"},
		{
			name: "docker client without engine, podman answering",
			bins: map[string]string{"docker": dockerClientOnly, "podman": podmanAnswering},
			want: "podman",
		},
		{
			name: "forced podman, not installed", forced: "podman",
			bins:     map[string]string{"docker": dockerAnswering},
			wantMsgs: []string{"only podman was tried", "podman: not found on PATH"},
		},
		{name: "forced unknown", forced: "lxc", wantMsgs: []string{"KIND_EXPERIMENTAL_PROVIDER=lxc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, script := range tc.bins {
				fakeBin(t, dir, name, script)
			}
			t.Setenv("PATH", dir)
			t.Setenv("KIND_EXPERIMENTAL_PROVIDER", tc.forced)
			rt, err := detectRuntime(ctx)
			if tc.want != "" {
				if err != nil || rt.name != tc.want || rt.option == nil {
					t.Fatalf("detectRuntime = %q, %v; want %q", rt.name, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("detectRuntime = %q, want an error", rt.name)
			}
			for _, want := range tc.wantMsgs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error does not contain %q:\n%v", want, err)
				}
			}
		})
	}
}

func TestLogger(t *testing.T) {
	var b bytes.Buffer
	l := newLogger(&b)
	l.V(0).Infof(" • %s  ...\n", "Preparing nodes")
	l.V(0).Info("no newline")
	l.V(1).Info("debug: hidden")
	l.Warn("careful")
	if l.V(1).Enabled() || !l.V(0).Enabled() {
		t.Error("V(0) should be enabled and V(1) not")
	}
	want := " • Preparing nodes  ...\nno newline\nWARNING: careful\n"
	if b.String() != want {
		t.Errorf("log = %q, want %q", b.String(), want)
	}
	newLogger(nil).V(0).Info("discarded") // must not panic
}

// fakeDockerEngine answers the docker commands kind's library runs for
// listing clusters, exporting a kubeconfig, deleting nodes and starting a
// creation; it logs every call to $FAKE_DOCKER_LOG. $FAKE_KIND_CLUSTER names
// the one cluster that "exists" (none when empty). It creates nothing: the
// network and container commands fail.
const fakeDockerEngine = `echo "$*" >> "$FAKE_DOCKER_LOG"
case "$1" in
-v|--version) echo "Docker version 28.2.2, build fake" ;;
info)
  case "$*" in
  *'{{json .}}'*) echo '{"CgroupDriver":"systemd","CgroupVersion":"2","MemoryLimit":true,"PidsLimit":true,"CPUShares":true,"SecurityOptions":["name=seccomp,profile=builtin"]}' ;;
  *) echo 28.2.2 ;;
  esac ;;
ps)
  [ -n "$FAKE_KIND_CLUSTER" ] || exit 0
  case "$*" in
  *"io.x-k8s.kind.cluster=$FAKE_KIND_CLUSTER "*) echo "$FAKE_KIND_CLUSTER-control-plane" ;;
  *"io.x-k8s.kind.cluster="*) ;;
  *) echo "$FAKE_KIND_CLUSTER" ;;
  esac ;;
inspect)
  case "$*" in
  *io.x-k8s.kind.role*) echo control-plane ;;
  *desktop.docker.io/ports/6443*) echo 127.0.0.1:40123 ;;
  *--type=image*) ;;
  *) echo "fake docker: cannot inspect $*" >&2; exit 1 ;;
  esac ;;
exec)
  # no cat: PATH holds only this script; read is a shell builtin
  while IFS= read -r line; do printf '%s\n' "$line"; done <<'KUBECONFIG'
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: Zm9v
    server: https://node:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Zm9v
    client-key-data: Zm9v
KUBECONFIG
  ;;
rm) ;;
*) echo "fake docker: $1 is not faked" >&2; exit 1 ;;
esac
`

// withFakeDocker puts fakeDockerEngine first on an isolated PATH, with
// cluster as the existing one, and returns the call log's path.
func withFakeDocker(t *testing.T, cluster string) (callLog string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the fake docker is a shell script")
	}
	dir := t.TempDir()
	fakeBin(t, dir, "docker", fakeDockerEngine)
	callLog = filepath.Join(dir, "calls.log")
	t.Setenv("PATH", dir)
	t.Setenv("FAKE_DOCKER_LOG", callLog)
	t.Setenv("FAKE_KIND_CLUSTER", cluster)
	return callLog
}

func readCalls(t *testing.T, callLog string) string {
	t.Helper()
	b, err := os.ReadFile(callLog)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestCreateReusesExistingCluster drives kind's library against a fake
// docker engine that holds cluster "kindtest": Create creates nothing and
// only exports its kubeconfig as context kind-kindtest; Delete removes the
// node and the context.
func TestCreateReusesExistingCluster(t *testing.T) {
	_, kubeconfig := isolate(t)
	callLog := withFakeDocker(t, "kindtest")
	ctx := context.Background()
	var log bytes.Buffer
	if err := Create(ctx, Options{Name: "kindtest", Kubeconfig: kubeconfig, Log: &log}); err != nil {
		t.Fatalf("Create: %v\nlog:\n%s\ndocker calls:\n%s", err, log.String(), readCalls(t, callLog))
	}
	if !strings.Contains(log.String(), "reusing it") {
		t.Errorf("the log does not say the cluster is reused:\n%s", log.String())
	}
	calls := readCalls(t, callLog)
	for _, verb := range []string{"run ", "create ", "network ", "pull "} {
		for _, line := range strings.Split(calls, "\n") {
			if strings.HasPrefix(line, verb) {
				t.Errorf("reusing the cluster ran docker %s", line)
			}
		}
	}
	b, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatalf("no kubeconfig exported: %v", err)
	}
	var kc struct {
		CurrentContext string `json:"current-context"`
		Clusters       []struct {
			Name    string `json:"name"`
			Cluster struct {
				Server string `json:"server"`
			} `json:"cluster"`
		} `json:"clusters"`
	}
	if err := yaml.Unmarshal(b, &kc); err != nil {
		t.Fatal(err)
	}
	if kc.CurrentContext != ContextName("kindtest") || len(kc.Clusters) != 1 || kc.Clusters[0].Name != "kind-kindtest" || kc.Clusters[0].Cluster.Server != "https://127.0.0.1:40123" {
		t.Errorf("exported kubeconfig: want current context kind-kindtest and server https://127.0.0.1:40123, got:\n%s", b)
	}

	if err := Delete(ctx, Options{Name: "kindtest", Kubeconfig: kubeconfig, Log: &log}); err != nil {
		t.Fatalf("Delete: %v\nlog:\n%s", err, log.String())
	}
	if !strings.Contains(readCalls(t, callLog), "rm -f -v kindtest-control-plane") {
		t.Errorf("Delete did not remove the node container; docker calls:\n%s", readCalls(t, callLog))
	}
	if b, err := os.ReadFile(kubeconfig); err != nil || strings.Contains(string(b), "kind-kindtest") {
		t.Errorf("the context is still in the kubeconfig (%v):\n%s", err, b)
	}
}

// TestCreatePassesConfigToKind drives a fresh creation against the fake
// engine, whose network commands fail: kind must accept (validate) the
// config and reach provisioning with the requested node image.
func TestCreatePassesConfigToKind(t *testing.T) {
	_, kubeconfig := isolate(t)
	callLog := withFakeDocker(t, "")
	var log bytes.Buffer
	err := Create(context.Background(), Options{Name: "fresh", KubernetesVersion: "v1.33.1", Kubeconfig: kubeconfig, Log: &log})
	if err == nil || !strings.Contains(err.Error(), "network") {
		t.Fatalf("Create against an engine whose network commands fail = %v, want a network error\nlog:\n%s", err, log.String())
	}
	t.Logf("error: %v\nlog:\n%s", err, log.String())
	if !strings.Contains(log.String(), `Creating cluster "fresh"`) {
		t.Errorf("kind did not start creating (config rejected?):\n%s", log.String())
	}
	if calls := readCalls(t, callLog); !strings.Contains(calls, "inspect --type=image kindest/node:v1.33.1") {
		t.Errorf("kind did not look for the node image kindest/node:v1.33.1; docker calls:\n%s", calls)
	}
	if _, err := os.Stat(kubeconfig); err == nil {
		b, _ := os.ReadFile(kubeconfig)
		if strings.Contains(string(b), "kind-fresh") {
			t.Errorf("a failed creation left its context in the kubeconfig:\n%s", b)
		}
	}
}
