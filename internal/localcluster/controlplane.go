package localcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/agentsandbox/go-sandboxtest/internal/dirprovisioner"
	"github.com/agentsandbox/go-sandboxtest/internal/proc"
	"github.com/agentsandbox/go-sandboxtest/internal/processnode"
)

// GatewayAPIVersion is the sigs.k8s.io/gateway-api version whose standard
// CRDs are installed (the one in sandboxtest's go.mod).
const GatewayAPIVersion = "v1.6.3"

// KubeconfigName names the cluster, user and context in the kubeconfig.
const KubeconfigName = "sandboxtest-local"

// ServiceClusterIPRange is the kube-apiserver's --service-cluster-ip-range.
const ServiceClusterIPRange = "10.0.0.0/24"

// kubernetesServiceIP is the first address of the service range: the
// kubernetes Service's, in the API server's certificate, and where pods
// reach the API.
func kubernetesServiceIP() net.IP {
	_, svcNet, _ := net.ParseCIDR(ServiceClusterIPRange)
	ip := append(net.IP(nil), svcNet.IP.To4()...)
	ip[3]++
	return ip
}

// Options configure StartControlPlane.
type Options struct {
	// PodCIDR is the pod network of the node (Start); default
	// processnode.DefaultPodCIDR. Each cluster has its own network
	// namespace, so clusters side by side may use the same one.
	PodCIDR string
	// Dir is the state directory: pki/, etcd/ (wiped at start), logs/<component>.log
	// and kubeconfig. Required.
	Dir string
	// Log receives progress lines. Default: discard.
	Log io.Writer
	// Builder provides the binaries. Default: &Builder{Log: Log}.
	Builder *Builder
	// StartTimeout bounds each start-up step (not the build). Default 60s.
	StartTimeout time.Duration
	// PodBinary is the node's PodBinary. Default: a sandboxtest-pod built
	// from this module's source (setupbin.PodBinary), else the node's own
	// binary.
	PodBinary string
	// OwnSignals means the caller handles SIGINT/SIGTERM itself (a daemon
	// that stops the cluster and cleans up); otherwise Start stops the
	// cluster on those signals and re-raises them.
	OwnSignals bool
}

// ControlPlane is a running local control plane: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, the agent-sandbox CRDs and
// controller, and the Gateway API CRDs. There are no nodes.
type ControlPlane struct {
	// Kubeconfig is the path of the admin kubeconfig (context sandboxtest-local).
	Kubeconfig string
	// RESTConfig authenticates as the admin (system:masters).
	RESTConfig *rest.Config
	// Dir is the state directory (Options.Dir).
	Dir string
	// Binaries maps binary names (BinEtcd, ...) to paths.
	Binaries map[string]string
	// Certs names the PKI files; Certs.CA() can issue more certificates.
	Certs *Certs
	// APIServerURL is https://127.0.0.1:<port>.
	APIServerURL string
	// EtcdURL is https://127.0.0.1:<port>; etcd requires a client
	// certificate from the etcd CA (Certs.EtcdClientCert).
	EtcdURL string
	// AdminToken is a bearer token for the admin user (--token-auth-file).
	AdminToken string

	etcdPeerURL string // https://127.0.0.1:<port>, mutual TLS as EtcdURL

	log     io.Writer
	timeout time.Duration

	mu       sync.Mutex
	procs    []*proc.Process // start order
	ports    []int           // every port handed to a component
	stopOnce sync.Once
	stopErr  error

	volumes *dirprovisioner.Provisioner // PVs of StorageClass standard, under Dir/volumes
}

// Component names, also the log file names under Dir/logs.
const (
	compEtcd       = BinEtcd
	compAPIServer  = BinKubeAPIServer
	compKCM        = BinControllerManager
	compScheduler  = BinScheduler
	compController = BinController
)

// controllerNames are the agent-sandbox controllers (with --extensions)
// whose "Starting workers" log line shows the manager is running.
var controllerNames = []string{"sandbox", "sandboxclaim", "sandboxtemplate", "sandboxwarmpool"}

// StartControlPlane builds (first run) and starts a local control plane.
// On failure everything it started is stopped again.
func StartControlPlane(ctx context.Context, opts Options) (cp *ControlPlane, err error) {
	if opts.Dir == "" {
		return nil, errors.New("localcluster: Options.Dir is required")
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Builder == nil {
		opts.Builder = &Builder{Log: opts.Log}
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 60 * time.Second
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	c := &ControlPlane{Dir: dir, log: opts.Log, timeout: opts.StartTimeout}
	total := time.Now()

	// Binaries (minutes on the first run, instant afterwards).
	t := time.Now()
	c.Binaries, err = opts.Builder.Ensure(ctx)
	if err != nil {
		return nil, fmt.Errorf("local control plane binaries: %w", err)
	}
	c.logf("binaries ready in %s", since(t))

	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()

	// Fresh state: certificates, etcd data and logs from an earlier run go.
	for _, sub := range []string{"pki", "etcd", "logs", "volumes"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil {
		return nil, err
	}
	t = time.Now()
	if c.Certs, err = writeCerts(filepath.Join(dir, "pki"), kubernetesServiceIP()); err != nil {
		return nil, fmt.Errorf("generating certificates: %w", err)
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	c.AdminToken = hex.EncodeToString(tok)
	tokenFile := filepath.Join(dir, "pki", "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(c.AdminToken+","+AdminUser+","+AdminUser+",system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	c.logf("certificates ready in %s", since(t))

	if err := c.startEtcd(ctx); err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx, tokenFile); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfig(); err != nil {
		return nil, err
	}

	common := []string{
		"--kubeconfig", c.Kubeconfig,
		"--authentication-kubeconfig", c.Kubeconfig,
		"--authorization-kubeconfig", c.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--profiling=false",
	}
	// kube-scheduler runs in kube-controller-manager's process when both are
	// one executable (the cache's kubeMain), started once the default
	// ServiceAccount wait below proves the controller manager works;
	// separate upstream binaries from SANDBOXTEST_BIN_DIR run as two
	// processes, and a scheduler of its own comes up while the CRDs are
	// applied.
	var sched *proc.Process
	var kcmEnv []string
	if c.schedulerInKCM() {
		args, err := json.Marshal(common)
		if err != nil {
			return nil, err
		}
		kcmEnv = []string{"SANDBOXTEST_SCHEDULER_ARGS=" + string(args)}
	} else if sched, err = c.start(compScheduler, common); err != nil {
		return nil, err
	}

	if err := c.installCRDs(ctx); err != nil {
		return nil, err
	}
	// The controller manager starts after the CRDs: its garbage collector
	// only rediscovers resources every 30s, and without the Sandbox and
	// SandboxClaim types a deleted claim's pod would linger that long.
	t = time.Now()
	kcm, err := c.start(compKCM, append(append([]string{}, common...),
		"--controllers="+kcmControllers,
		"--service-account-private-key-file", c.Certs.ServiceAccountKey,
		"--root-ca-file", c.Certs.CACert,
		"--cluster-signing-cert-file", c.Certs.CACert,
		"--cluster-signing-key-file", c.Certs.CAKey,
		"--use-service-account-credentials=false",
	), kcmEnv...)
	if err != nil {
		return nil, err
	}

	core, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		return nil, err
	}
	if err := c.wait(ctx, "waiting for the default ServiceAccount", kcm, func(ctx context.Context) error {
		_, err := core.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return nil, err
	}
	if sched != nil && sched.Exited() {
		return nil, c.exitedErr("starting kube-scheduler", sched)
	}
	if kcmEnv != nil {
		// kubeMain starts its scheduler on SIGUSR2 (schedulerAlongside).
		if err := syscall.Kill(kcm.Pid(), syscall.SIGUSR2); err != nil {
			return nil, fmt.Errorf("starting kube-scheduler in kube-controller-manager's process: %w", err)
		}
	}
	c.logf("kube-controller-manager ready in %s (default ServiceAccount created)", since(t))

	// PVCs without a class get the default one, as on Kind.
	if err := dirprovisioner.EnsureStorageClass(ctx, core); err != nil {
		return nil, err
	}
	if c.volumes, err = dirprovisioner.Start(ctx, dirprovisioner.Config{
		Client: core, Node: processnode.DefaultName, Dir: filepath.Join(dir, "volumes"), Log: c.log,
	}); err != nil {
		return nil, err
	}

	if err := c.startController(ctx); err != nil {
		return nil, err
	}
	// A scheduler that failed as it started (a second after the signal)
	// took its process down; without this, pods would only stay Pending.
	if kcm.Exited() {
		return nil, c.exitedErr("starting kube-scheduler and kube-controller-manager", kcm)
	}
	c.apiServerIdle()
	c.logf("control plane ready in %s (kubeconfig %s)", since(total), c.Kubeconfig)
	return c, nil
}

// startEtcd serves etcd over mutual TLS on loopback ports, clients and peer
// alike: it speaks only to holders of a certificate from the etcd CA
// (kube-apiserver), not to every local user.
func (c *ControlPlane) startEtcd(ctx context.Context) error {
	t := time.Now()
	dataDir := filepath.Join(c.Dir, "etcd")
	client, err := c.etcdHTTPClient()
	if err != nil {
		return err
	}
	var clientURL, peerURL string
	_, err = c.startRetryingPorts(ctx, compEtcd, func() ([]string, error) {
		ports, err := c.freePorts(2)
		if err != nil {
			return nil, err
		}
		clientURL = fmt.Sprintf("https://127.0.0.1:%d", ports[0])
		peerURL = fmt.Sprintf("https://127.0.0.1:%d", ports[1])
		if err := os.RemoveAll(dataDir); err != nil {
			return nil, err
		}
		return []string{
			"--name", "sandboxtest",
			"--data-dir", dataDir,
			"--listen-client-urls", clientURL,
			"--advertise-client-urls", clientURL,
			"--listen-peer-urls", peerURL,
			"--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "sandboxtest=" + peerURL,
			"--initial-cluster-state", "new",
			"--client-cert-auth",
			"--trusted-ca-file", c.Certs.EtcdCACert,
			"--cert-file", c.Certs.EtcdServerCert,
			"--key-file", c.Certs.EtcdServerKey,
			"--peer-client-cert-auth",
			"--peer-trusted-ca-file", c.Certs.EtcdCACert,
			"--peer-cert-file", c.Certs.EtcdServerCert,
			"--peer-key-file", c.Certs.EtcdServerKey,
			// Throwaway data: skip fsync, which dominates etcd's cost on slow disks.
			"--unsafe-no-fsync",
		}, nil
	}, func(ctx context.Context) error {
		return httpOK(ctx, client, clientURL+"/health", `"health":"true"`)
	})
	client.CloseIdleConnections()
	if err != nil {
		return err
	}
	c.EtcdURL, c.etcdPeerURL = clientURL, peerURL
	c.logf("etcd ready in %s", since(t))
	return nil
}

// etcdHTTPClient speaks to etcd as kube-apiserver does, with its etcd
// client certificate.
func (c *ControlPlane) etcdHTTPClient() (*http.Client, error) {
	ca, err := os.ReadFile(c.Certs.EtcdCACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s", c.Certs.EtcdCACert)
	}
	pair, err := tls.LoadX509KeyPair(c.Certs.EtcdClientCert, c.Certs.EtcdClientKey)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair},
	}}}, nil
}

func (c *ControlPlane) startAPIServer(ctx context.Context, tokenFile string) error {
	t := time.Now()
	var url string
	var cs kubernetes.Interface
	_, err := c.startRetryingPorts(ctx, compAPIServer, func() ([]string, error) {
		ports, err := c.freePorts(1)
		if err != nil {
			return nil, err
		}
		url = fmt.Sprintf("https://127.0.0.1:%d", ports[0])
		c.RESTConfig = c.adminRESTConfig(url)
		if cs, err = kubernetes.NewForConfig(c.RESTConfig); err != nil {
			return nil, err
		}
		return []string{
			"--etcd-servers", c.EtcdURL,
			"--etcd-cafile", c.Certs.EtcdCACert,
			"--etcd-certfile", c.Certs.EtcdClientCert,
			"--etcd-keyfile", c.Certs.EtcdClientKey,
			"--bind-address", "127.0.0.1",
			"--secure-port", strconv.Itoa(ports[0]),
			"--cert-dir", filepath.Join(c.Dir, "pki"),
			"--tls-cert-file", c.Certs.ServingCert,
			"--tls-private-key-file", c.Certs.ServingKey,
			"--client-ca-file", c.Certs.CACert,
			"--token-auth-file", tokenFile,
			// The process node serves only this identity, and kube-apiserver
			// talks to no kubelet whose certificate the cluster CA did not sign.
			"--kubelet-client-certificate", c.Certs.KubeletClientCert,
			"--kubelet-client-key", c.Certs.KubeletClientKey,
			"--kubelet-certificate-authority", c.Certs.CACert,
			"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file", c.Certs.ServiceAccountPub,
			"--service-account-signing-key-file", c.Certs.ServiceAccountKey,
			"--service-cluster-ip-range", ServiceClusterIPRange,
			"--authorization-mode", "RBAC",
			"--allow-privileged=true",
			"--profiling=false",
			// One client, no overload: API Priority and Fairness is pure overhead here.
			"--enable-priority-and-fairness=false",
			// API groups nothing here uses cost memory (storage, OpenAPI
			// schemas, handlers); their controllers are off in kcmControllers.
			"--runtime-config=" + apiGroupsOff,
			// Watch caches for pods and custom resources only (uncachedResources).
			"--watch-cache=true",
			"--watch-cache-sizes=" + watchCacheSizes(),
		}, nil
	}, func(ctx context.Context) error {
		body, err := readyz(ctx, cs)
		if err != nil && strings.TrimSpace(body) != "" {
			return fmt.Errorf("%v: %s", err, tail(strings.TrimSpace(body), 10))
		}
		return err
	})
	if err != nil {
		return err
	}
	c.APIServerURL = url
	c.logf("kube-apiserver ready in %s", since(t))
	return nil
}

// readyz fetches /readyz through RESTConfig.
func readyz(ctx context.Context, cs kubernetes.Interface) (string, error) {
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return string(body), err
}

func (c *ControlPlane) adminRESTConfig(url string) *rest.Config {
	return &rest.Config{
		Host: url,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   c.Certs.CACert,
			CertFile: c.Certs.AdminCert,
			KeyFile:  c.Certs.AdminKey,
		},
		QPS:   100,
		Burst: 200,
	}
}

// writeKubeconfig writes Dir/kubeconfig (embedded credentials) and sets
// RESTConfig from it.
func (c *ControlPlane) writeKubeconfig() error {
	read := func(p string) ([]byte, error) { return os.ReadFile(p) }
	ca, err := read(c.Certs.CACert)
	if err != nil {
		return err
	}
	cert, err := read(c.Certs.AdminCert)
	if err != nil {
		return err
	}
	key, err := read(c.Certs.AdminKey)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[KubeconfigName] = &clientcmdapi.Cluster{Server: c.APIServerURL, CertificateAuthorityData: ca}
	cfg.AuthInfos[KubeconfigName] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts[KubeconfigName] = &clientcmdapi.Context{Cluster: KubeconfigName, AuthInfo: KubeconfigName, Namespace: "default"}
	cfg.CurrentContext = KubeconfigName
	path := filepath.Join(c.Dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return fmt.Errorf("reading back kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 100, 200
	c.Kubeconfig, c.RESTConfig = path, rc
	return nil
}

// crdSource is a folder of CRD manifests inside a module.
type crdSource struct {
	module, version, dir string
	conversionNone       bool // set spec.conversion to {strategy: None}
}

var crdSources = []crdSource{
	{module: "sigs.k8s.io/agent-sandbox", version: AgentSandboxVersion, dir: "k8s/crds", conversionNone: true},
	{module: "sigs.k8s.io/gateway-api", version: GatewayAPIVersion, dir: "config/crd/standard"},
}

// loadCRDs reads every CustomResourceDefinition document of the sources,
// ready for server-side apply (status dropped, conversion patched).
func loadCRDs(ctx context.Context) ([]map[string]any, error) {
	var out []map[string]any
	for _, src := range crdSources {
		modDir, err := ModuleDir(ctx, src.module, src.version)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(modDir, src.dir)
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
		n := 0
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
			for {
				var doc map[string]any
				if err := dec.Decode(&doc); err != nil {
					if err == io.EOF {
						break
					}
					return nil, fmt.Errorf("parsing %s: %w", f, err)
				}
				if doc["kind"] != "CustomResourceDefinition" {
					continue
				}
				delete(doc, "status")
				if src.conversionNone {
					spec, _ := doc["spec"].(map[string]any)
					if spec == nil {
						return nil, fmt.Errorf("%s: CRD without spec", f)
					}
					spec["conversion"] = map[string]any{"strategy": "None"}
				}
				out = append(out, doc)
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("no CustomResourceDefinition in %s", dir)
		}
	}
	return out, nil
}

// installCRDs server-side applies the CRDs and waits until all are Established.
func (c *ControlPlane) installCRDs(ctx context.Context) error {
	t := time.Now()
	crds, err := loadCRDs(ctx)
	if err != nil {
		return fmt.Errorf("installing CRDs: %w", err)
	}
	client, err := apiextensionsclient.NewForConfig(c.RESTConfig)
	if err != nil {
		return err
	}
	api := c.proc(compAPIServer)
	names := make([]string, 0, len(crds))
	force := true
	for _, crd := range crds {
		meta, _ := crd["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		data, err := json.Marshal(crd)
		if err != nil {
			return err
		}
		if err := c.wait(ctx, "applying CRD "+name, api, func(ctx context.Context) error {
			_, err := client.ApiextensionsV1().CustomResourceDefinitions().Patch(ctx, name, types.ApplyPatchType, data,
				metav1.PatchOptions{FieldManager: "sandboxtest", Force: &force})
			return err
		}); err != nil {
			return err
		}
		names = append(names, name)
	}
	pending := append([]string(nil), names...)
	if err := c.wait(ctx, "waiting for CRDs to be Established", api, func(ctx context.Context) error {
		var still []string
		for _, name := range pending {
			crd, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
			if err != nil || !crdEstablished(crd) {
				still = append(still, name)
			}
		}
		pending = still
		if len(still) > 0 {
			return fmt.Errorf("not Established: %s", strings.Join(still, ", "))
		}
		return nil
	}); err != nil {
		return err
	}
	c.logf("%d CRDs established in %s", len(names), since(t))
	return nil
}

func crdEstablished(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, cond := range crd.Status.Conditions {
		if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

func (c *ControlPlane) startController(ctx context.Context) error {
	t := time.Now()
	p, err := c.start(compController, []string{
		"--kubeconfig", c.Kubeconfig,
		"--extensions",
		"--leader-elect=false",
		"--enable-webhook=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=0",
	})
	if err != nil {
		return err
	}
	if err := c.wait(ctx, "starting agent-sandbox-controller", p, func(context.Context) error {
		return controllerStarted(proc.FileTail(p.LogPath(), 1000))
	}); err != nil {
		return err
	}
	c.logf("agent-sandbox-controller ready in %s", since(t))
	return nil
}

// controllerStarted checks the controller-runtime log for each controller's
// "Starting workers" line.
func controllerStarted(log string) error {
	var missing []string
	for _, name := range controllerNames {
		found := false
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "Starting workers") && strings.Contains(line, `"controller":"`+name+`"`) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no \"Starting workers\" log line yet for controllers %s", strings.Join(missing, ", "))
	}
	return nil
}

// start launches a component with its log in Dir/logs/<name>.log.
func (c *ControlPlane) start(name string, args []string, env ...string) (*proc.Process, error) {
	p, err := proc.Start(proc.Spec{
		Name:    name,
		Path:    c.Binaries[name],
		Args:    args,
		Env:     append(componentEnv(name), env...),
		Dir:     c.Dir,
		LogPath: filepath.Join(c.Dir, "logs", name+".log"),
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// startRetryingPorts starts a component whose args pick fresh ports and waits
// for ready; when the component dies because a port was taken in the meantime
// it tries again with other ports.
func (c *ControlPlane) startRetryingPorts(ctx context.Context, name string, args func() ([]string, error), ready func(context.Context) error) (*proc.Process, error) {
	for attempt := 1; ; attempt++ {
		a, err := args()
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		p, err := c.start(name, a)
		if err != nil {
			return nil, err
		}
		err = c.wait(ctx, "starting "+name, p, ready)
		if err == nil {
			return p, nil
		}
		if attempt < 3 && p.Exited() && strings.Contains(p.LogTail(50), "address already in use") {
			c.logf("%s: port taken, retrying with other ports", name)
			c.forget(p)
			continue
		}
		return nil, err
	}
}

func (c *ControlPlane) forget(p *proc.Process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, q := range c.procs {
		if q == p {
			c.procs = append(c.procs[:i], c.procs[i+1:]...)
			return
		}
	}
}

func (c *ControlPlane) proc(name string) *proc.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.procs) - 1; i >= 0; i-- {
		if c.procs[i].Name() == name {
			return c.procs[i]
		}
	}
	return nil
}

func (c *ControlPlane) freePorts(n int) ([]int, error) {
	var ports []int
	for len(ports) < n {
		p, err := proc.FreePort()
		if err != nil {
			return nil, err
		}
		dup := false
		for _, q := range ports {
			dup = dup || q == p
		}
		if !dup {
			ports = append(ports, p)
		}
	}
	c.mu.Lock()
	c.ports = append(c.ports, ports...)
	c.mu.Unlock()
	return ports, nil
}

const tailLines = 20

// wait polls check until it succeeds, failing early if p exits and after the
// step timeout; errors name the step and carry the last lines of p's log.
func (c *ControlPlane) wait(ctx context.Context, step string, p *proc.Process, check func(context.Context) error) error {
	start := time.Now()
	deadline := start.Add(c.timeout)
	var last error
	for {
		if p != nil && p.Exited() {
			return c.exitedErr(step, p)
		}
		attemptCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(attemptCtx)
		cancel()
		if last == nil {
			return nil
		}
		if p != nil && p.Exited() {
			return c.exitedErr(step, p)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: interrupted after %s (%v); last check: %v%s", step, since(start), context.Cause(ctx), last, logTail(p))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not done after %s (timeout); last check: %v%s", step, c.timeout, last, logTail(p))
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *ControlPlane) exitedErr(step string, p *proc.Process) error {
	return fmt.Errorf("%s: %s exited (%v)%s", step, p.Name(), p.ExitErr(), logTail(p))
}

func logTail(p *proc.Process) string {
	if p == nil {
		return ""
	}
	t := p.LogTail(tailLines)
	if t == "" {
		return fmt.Sprintf("\n%s log %s is empty", p.Name(), p.LogPath())
	}
	return fmt.Sprintf("\nlast %d lines of %s log %s:\n%s", tailLines, p.Name(), p.LogPath(), t)
}

// Stop stops every component in reverse start order (SIGTERM, then SIGKILL
// after a few seconds). It is idempotent.
func (c *ControlPlane) Stop() error {
	c.stopOnce.Do(func() {
		t := time.Now()
		if c.volumes != nil {
			c.volumes.Stop()
		}
		c.mu.Lock()
		procs := append([]*proc.Process(nil), c.procs...)
		c.mu.Unlock()
		var errs []error
		for i := len(procs) - 1; i >= 0; i-- {
			if err := procs[i].Stop(5 * time.Second); err != nil {
				errs = append(errs, err)
			}
		}
		c.stopErr = errors.Join(errs...)
		if len(procs) > 0 {
			c.logf("control plane stopped in %s", since(t))
		}
	})
	return c.stopErr
}

// LogTail returns the last n lines of a component's log (component is a
// binary name such as BinKubeAPIServer).
func (c *ControlPlane) LogTail(component string, n int) string {
	if component == compScheduler && c.schedulerInKCM() {
		component = compKCM // its lines are in the controller manager's log
	}
	return proc.FileTail(filepath.Join(c.Dir, "logs", component+".log"), n)
}

// schedulerInKCM: kube-scheduler and kube-controller-manager are one
// executable (links to kubeMain), which runs both in one process.
func (c *ControlPlane) schedulerInKCM() bool {
	a, errA := os.Stat(c.Binaries[compKCM])
	b, errB := os.Stat(c.Binaries[compScheduler])
	return errA == nil && errB == nil && os.SameFile(a, b)
}

func (c *ControlPlane) logf(format string, args ...any) {
	fmt.Fprintf(c.log, "sandboxtest: "+format+"\n", args...)
}

func since(t time.Time) time.Duration {
	d := time.Since(t)
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

// httpOK GETs url and wants a 200 whose body contains want.
func httpOK(ctx context.Context, client *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(want)) {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
