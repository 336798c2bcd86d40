// Package kindcluster creates and deletes the Kind cluster sandboxtest runs
// on, through the sigs.k8s.io/kind library (never the kind CLI).
//
// Kind runs its nodes as containers, so it needs a container runtime whose
// engine answers: docker, podman or nerdctl (or finch). The library's own
// detection (cluster.DetectNodeProvider) only runs "docker -v" and the like,
// which succeeds when a client is installed without an engine, and then never
// tries the next runtime. This package probes each runtime's engine instead,
// in kind's order, and explains what it found when none answers.
package kindcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/kind/pkg/apis/config/defaults"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	kindexec "sigs.k8s.io/kind/pkg/exec"
	kindlog "sigs.k8s.io/kind/pkg/log"
)

// DefaultName is the cluster name when Options.Name is empty.
const DefaultName = "sandboxtest"

// DefaultNodeImage is the node image kind v0.33.0 uses by default.
const DefaultNodeImage = defaults.Image

// Options configures Create and Delete. The zero value is usable.
type Options struct {
	// Name of the kind cluster; default DefaultName. Its kubeconfig context
	// is ContextName(Name).
	Name string
	// NodeImage is the kindest/node image; default DefaultNodeImage.
	// Exclusive with KubernetesVersion.
	NodeImage string
	// KubernetesVersion picks the node image kindest/node:<version>, e.g.
	// "v1.33.1". Exclusive with NodeImage.
	KubernetesVersion string
	// Kubeconfig is the file the cluster's context is merged into; default
	// as kind and kubectl do: $KUBECONFIG, else ~/.kube/config (see
	// KubeconfigPath).
	Kubeconfig string
	// Wait bounds the wait for the control plane to be ready after creation;
	// zero does not wait.
	Wait time.Duration
	// Log receives kind's progress messages; nil discards them.
	Log io.Writer
}

func (o Options) name() string {
	if o.Name == "" {
		return DefaultName
	}
	return o.Name
}

// ContextName is the kubeconfig context kind gives the cluster called name.
func ContextName(name string) string {
	if name == "" {
		name = DefaultName
	}
	return "kind-" + name
}

// ErrNoRuntime is wrapped by the error Create and Delete return when no
// container runtime answers on this machine.
var ErrNoRuntime = errors.New("kind needs a container runtime (docker, podman or nerdctl) and none answers on this machine")

// ownerReferencesPatch enables the OwnerReferencesPermissionEnforcement
// admission plugin, as upstream agent-sandbox's kind configuration does. It
// names no apiVersion and uses the map form of extraArgs, which kind converts
// for both kubeadm v1beta3 and v1beta4, so it fits every node image.
const ownerReferencesPatch = `kind: ClusterConfiguration
apiServer:
  extraArgs:
    enable-admission-plugins: "NodeRestriction,OwnerReferencesPermissionEnforcement"
`

var kubernetesVersionRE = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+$`)

// NodeImage is the node image opts ask for.
func NodeImage(opts Options) (string, error) {
	switch {
	case opts.NodeImage != "" && opts.KubernetesVersion != "":
		return "", fmt.Errorf("both a node image (%s) and a Kubernetes version (%s) are set; set one of them", opts.NodeImage, opts.KubernetesVersion)
	case opts.NodeImage != "":
		return opts.NodeImage, nil
	case opts.KubernetesVersion != "":
		v := opts.KubernetesVersion
		if !kubernetesVersionRE.MatchString(v) {
			return "", fmt.Errorf("the Kubernetes version %q is not of the form v1.33.1 (kind's node images are tagged kindest/node:vMAJOR.MINOR.PATCH)", v)
		}
		return "kindest/node:v" + strings.TrimPrefix(v, "v"), nil
	}
	return DefaultNodeImage, nil
}

// Config is the kind cluster configuration sandboxtest wants: one
// control-plane node running the chosen image, the
// OwnerReferencesPermissionEnforcement admission plugin enabled, and kind's
// networking defaults (its CNI, kindnet, enforces the NetworkPolicies
// sandbox templates rely on).
func Config(opts Options) (*v1alpha4.Cluster, error) {
	image, err := NodeImage(opts)
	if err != nil {
		return nil, err
	}
	cfg := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     opts.name(),
		Nodes: []v1alpha4.Node{{
			Role:  v1alpha4.ControlPlaneRole,
			Image: image,
		}},
		KubeadmConfigPatches: []string{ownerReferencesPatch},
	}
	v1alpha4.SetDefaultsCluster(cfg)
	return cfg, nil
}

// Create creates the kind cluster opts describe and merges its context
// (ContextName) into the kubeconfig, making it the current one. When a
// cluster of that name exists it is reused: only the kubeconfig is exported.
//
// kind's creation cannot be cancelled: ctx bounds the runtime probe and is
// checked before creation starts.
func Create(ctx context.Context, opts Options) error {
	cfg, err := Config(opts)
	if err != nil {
		return err
	}
	name := opts.name()
	logger := newLogger(opts.Log)
	provider, err := newProvider(ctx, logger)
	if err != nil {
		return err
	}
	existing, err := provider.List()
	if err != nil {
		return fmt.Errorf("listing kind clusters: %w", err)
	}
	if slices.Contains(existing, name) {
		logger.V(0).Infof("kind cluster %q exists; reusing it (its node image is not changed)", name)
		if err := provider.ExportKubeConfig(name, opts.Kubeconfig, false); err != nil {
			return fmt.Errorf("exporting the kubeconfig of kind cluster %q to %s: %w", name, KubeconfigPath(opts.Kubeconfig), err)
		}
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("creating kind cluster %q: %w", name, err)
	}
	err = provider.Create(name,
		cluster.CreateWithV1Alpha4Config(cfg),
		cluster.CreateWithKubeconfigPath(opts.Kubeconfig),
		cluster.CreateWithWaitForReady(opts.Wait),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		return fmt.Errorf("creating kind cluster %q with node image %s: %w", name, cfg.Nodes[0].Image, err)
	}
	return nil
}

// Delete deletes the kind cluster opts name and removes its context from the
// kubeconfig. Deleting a cluster that does not exist is not an error.
func Delete(ctx context.Context, opts Options) error {
	name := opts.name()
	logger := newLogger(opts.Log)
	provider, err := newProvider(ctx, logger)
	if err != nil {
		return err
	}
	if existing, err := provider.List(); err == nil && !slices.Contains(existing, name) {
		logger.V(0).Infof("no kind cluster %q (clusters: %v); removing its kubeconfig context, if any", name, existing)
	}
	if err := provider.Delete(name, opts.Kubeconfig); err != nil {
		return fmt.Errorf("deleting kind cluster %q: %w", name, err)
	}
	return nil
}

// KubeconfigPath is the file kind merges a cluster's context into, given the
// explicit path (empty for the default): explicit, else the first file of
// $KUBECONFIG that exists (the last one when none does), else
// $HOME/.kube/config.
func KubeconfigPath(explicit string) string {
	if explicit != "" {
		return explicit
	}
	var paths []string
	for _, p := range filepath.SplitList(os.Getenv("KUBECONFIG")) {
		if p != "" && !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if len(paths) > 0 {
		return paths[len(paths)-1]
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "~"
	}
	return filepath.Join(home, ".kube", "config")
}

func newProvider(ctx context.Context, logger kindlog.Logger) (*cluster.Provider, error) {
	rt, err := detectRuntime(ctx)
	if err != nil {
		return nil, err
	}
	logger.V(0).Infof("using the %s container runtime", rt.name)
	return cluster.NewProvider(cluster.ProviderWithLogger(logger), rt.option), nil
}

// runtimeCandidate is a container runtime kind can use.
type runtimeCandidate struct {
	name   string   // as KIND_EXPERIMENTAL_PROVIDER spells it
	bin    string   // the client binary
	probe  []string // arguments that succeed only when the engine answers
	option func() cluster.ProviderOption
	hint   string // how to make its engine answer
}

// runtimeCandidates lists the runtimes in cluster.DetectNodeProvider's order.
func runtimeCandidates() []runtimeCandidate {
	nerdctl := func(bin string) runtimeCandidate {
		return runtimeCandidate{
			name: bin, bin: bin, probe: []string{"info"},
			option: func() cluster.ProviderOption { return cluster.ProviderWithNerdctl(bin) },
			hint:   "start containerd (nerdctl) or the finch VM (finch vm start)",
		}
	}
	return []runtimeCandidate{
		{
			name: "docker", bin: "docker",
			probe:  []string{"info", "--format", "{{.ServerVersion}}"},
			option: cluster.ProviderWithDocker,
			hint:   "start the Docker engine (sudo systemctl start docker, or open Docker Desktop) or point DOCKER_HOST at one",
		},
		nerdctl("nerdctl"),
		nerdctl("finch"),
		nerdctl("nerdctl.lima"),
		{
			name: "podman", bin: "podman",
			probe:  []string{"info", "--format", "{{.Version.Version}}"},
			option: cluster.ProviderWithPodman,
			hint:   "start it (podman machine start, on macOS and Windows)",
		},
	}
}

// probeTimeout bounds one runtime's probe (Docker Desktop can be slow).
const probeTimeout = 20 * time.Second

type detectedRuntime struct {
	name   string
	option cluster.ProviderOption
}

// detectRuntime returns the first runtime whose engine answers, honouring
// KIND_EXPERIMENTAL_PROVIDER as the kind CLI does, or an error wrapping
// ErrNoRuntime that says what it found and how to get a runtime.
func detectRuntime(ctx context.Context) (detectedRuntime, error) {
	candidates := runtimeCandidates()
	forced := os.Getenv("KIND_EXPERIMENTAL_PROVIDER")
	if forced != "" {
		i := slices.IndexFunc(candidates, func(c runtimeCandidate) bool { return c.name == forced })
		if i < 0 {
			return detectedRuntime{}, fmt.Errorf("KIND_EXPERIMENTAL_PROVIDER=%s is not a runtime kind knows (docker, podman, nerdctl, finch, nerdctl.lima); unset it to detect one", forced)
		}
		candidates = candidates[i : i+1]
	}
	var found []string
	for _, c := range candidates {
		path, err := osexec.LookPath(c.bin)
		if err != nil {
			if forced == "" && (c.name == "finch" || c.name == "nerdctl.lima") {
				continue // optional variants: not worth a line each
			}
			found = append(found, fmt.Sprintf("%s: not found on PATH", c.name))
			continue
		}
		out, err := probe(ctx, path, c.probe)
		if err == nil {
			return detectedRuntime{name: c.name, option: c.option()}, nil
		}
		if ctx.Err() != nil {
			return detectedRuntime{}, fmt.Errorf("probing the %s engine (%s %s): %w", c.name, c.bin, strings.Join(c.probe, " "), ctx.Err())
		}
		found = append(found, fmt.Sprintf("%s: the client %s is installed, but no engine answers it (%s %s: %s); %s",
			c.name, path, c.bin, c.probe[0], out, c.hint))
	}
	var b strings.Builder
	b.WriteString(":\n")
	if forced != "" {
		fmt.Fprintf(&b, "  (only %s was tried: KIND_EXPERIMENTAL_PROVIDER=%s)\n", forced, forced)
	}
	for _, f := range found {
		fmt.Fprintf(&b, "  %s\n", f)
	}
	b.WriteString("Install one: Docker https://docs.docker.com/engine/install/, Podman https://podman.io/docs/installation, nerdctl https://github.com/containerd/nerdctl#install\n")
	b.WriteString("Or use the local cluster, which needs no container runtime: sandboxtest-setup local up")
	return detectedRuntime{}, fmt.Errorf("%w%s", ErrNoRuntime, b.String())
}

// probe runs bin args with kind's exec; it succeeds when the command exits 0
// and prints something. On failure it returns the output's last line.
func probe(ctx context.Context, bin string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := kindexec.CommandContext(ctx, bin, args...).SetStdout(&stdout).SetStderr(&stderr).Run()
	if err == nil && strings.TrimSpace(stdout.String()) != "" {
		return "", nil
	}
	msg := lastLine(stderr.String())
	if msg == "" {
		msg = lastLine(stdout.String())
	}
	switch {
	case ctx.Err() != nil:
		msg = fmt.Sprintf("no answer within %s", probeTimeout)
	case err == nil:
		msg = "it printed nothing"
		err = errors.New(msg)
	case msg == "":
		var re *kindexec.RunError
		if errors.As(err, &re) && re.Inner != nil {
			msg = re.Inner.Error()
		} else {
			msg = err.Error()
		}
	}
	return msg, err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// writerLogger is a kind log.Logger writing V(0) messages, warnings and
// errors to a writer, one line each.
type writerLogger struct {
	mu sync.Mutex
	w  io.Writer
}

func newLogger(w io.Writer) *writerLogger {
	if w == nil {
		w = io.Discard
	}
	return &writerLogger{w: w}
}

func (l *writerLogger) write(prefix, msg string) {
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	io.WriteString(l.w, prefix+msg)
}

func (l *writerLogger) Warn(msg string)                   { l.write("WARNING: ", msg) }
func (l *writerLogger) Warnf(format string, args ...any)  { l.Warn(fmt.Sprintf(format, args...)) }
func (l *writerLogger) Error(msg string)                  { l.write("ERROR: ", msg) }
func (l *writerLogger) Errorf(format string, args ...any) { l.Error(fmt.Sprintf(format, args...)) }
func (l *writerLogger) V(level kindlog.Level) kindlog.InfoLogger {
	return infoLogger{l: l, enabled: level <= 0}
}

type infoLogger struct {
	l       *writerLogger
	enabled bool
}

func (i infoLogger) Info(msg string) {
	if i.enabled {
		i.l.write("", msg)
	}
}

func (i infoLogger) Infof(format string, args ...any) {
	if i.enabled {
		i.l.write("", fmt.Sprintf(format, args...))
	}
}

func (i infoLogger) Enabled() bool { return i.enabled }
