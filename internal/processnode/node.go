// Package processnode is a virtual-kubelet node whose pods are local
// processes, each on its own loopback address. Its kubelet API serves logs,
// exec and port-forward over TLS, so kubectl works through kube-apiserver as
// on a real node.
package processnode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// DefaultName is the node name when Config.Name is empty.
const DefaultName = "sandboxtest-local"

// LocalNodeLabel marks nodes run by this package, so tools can tell the local cluster apart.
const LocalNodeLabel = kube.LocalNodeLabel

// Config configures a process node.
type Config struct {
	Name       string               // node name; default DefaultName
	Client     kubernetes.Interface // required
	Kubeconfig string               // handed to pods that talk to the API server (the router)
	Dir        string               // pods' folders and container logs; required
	Runners    *Registry            // required; see DefaultRegistry
	// The kubelet API serves exec, logs and port-forward, so it serves
	// kube-apiserver alone; all four are required. ServingCert and
	// ServingKey (PEM) are its certificate for 127.0.0.1, from the CA
	// kube-apiserver checks kubelets with (--kubelet-certificate-authority).
	// A client must present a certificate ClientCA (PEM) signed, and the
	// certificate's common name must be APIServerUser (that of
	// kube-apiserver's --kubelet-client-certificate): other clients get
	// 403 Forbidden.
	ServingCert, ServingKey []byte
	ClientCA                []byte
	APIServerUser           string
	Log                     io.Writer // node lifecycle lines; default discard
	// PodPidsLimit bounds each pod's processes; default DefaultPodPidsLimit.
	PodPidsLimit int64
	// PodCIDR is the network of isolated pods, in a network namespace of
	// the node's own; default DefaultPodCIDR.
	PodCIDR string
	// PodBinary runs the cluster network's helper, and through it the
	// inits and runtime servers of isolated pods: a sandboxtest-pod build.
	// Empty, and for unisolated pods (SANDBOXTEST_UNISOLATED): this
	// process's executable, which links package podinit (as the node's
	// binary and its tests do).
	PodBinary string
	// APIServer is kube-apiserver's host:port on the host. With
	// APIServiceIP (the kubernetes Service's address) set too, pods reach
	// the API at APIServiceIP:443 and get a Kubeconfig that says so.
	APIServer, APIServiceIP string
}

// Node is a running process node.
type Node struct {
	Provider *Provider
	// Addr is the kubelet API's host:port.
	Addr   string
	vk     *nodeutil.Node
	cancel context.CancelFunc
	events record.EventBroadcaster
}

// Start registers the node and returns once kube-apiserver shows it Ready.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Client == nil || cfg.Dir == "" || cfg.Runners == nil {
		return nil, errors.New("processnode: Client, Dir and Runners are required")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close() // virtual-kubelet listens itself; the port was free a moment ago
	tlsCfg, err := kubeletTLS(cfg)
	if err != nil {
		return nil, err
	}
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)

	eb := record.NewBroadcaster()
	eb.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cfg.Client.CoreV1().Events("")})
	runCtx, cancel := context.WithCancel(context.Background())
	p := &Provider{
		cfg: cfg, runners: cfg.Runners, ctx: runCtx, started: time.Now(),
		pods:     map[string]*podRun{},
		recorder: eb.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "sandboxtest-process-node", Host: cfg.Name}),
	}
	if err := p.setUpIsolation(); err != nil {
		cancel()
		eb.Shutdown()
		return nil, err
	}
	mux := http.NewServeMux()
	vk, err := nodeutil.NewNode(cfg.Name,
		func(pc nodeutil.ProviderConfig) (nodeutil.Provider, node.NodeProvider, error) {
			describeNode(pc.Node, port)
			return p, nil, nil
		},
		nodeutil.WithClient(cfg.Client),
		nodeutil.AttachProviderRoutes(mux),
		func(c *nodeutil.NodeConfig) error {
			c.HTTPListenAddr = addr
			c.TLSConfig = tlsCfg
			c.Handler = onlyUser(cfg.APIServerUser, cfg.Name, mux)
			c.EventRecorder = p.recorder
			c.NumWorkers = 4
			return nil
		},
	)
	if err != nil {
		cancel()
		eb.Shutdown()
		p.closeNetwork()
		return nil, fmt.Errorf("processnode: %w", err)
	}
	n := &Node{Provider: p, Addr: addr, vk: vk, cancel: cancel, events: eb}
	go func() { _ = vk.Run(runCtx) }()
	if err := vk.WaitReady(ctx, 60*time.Second); err != nil {
		n.Stop()
		return nil, fmt.Errorf("processnode: node %s did not become ready: %w", cfg.Name, err)
	}
	fmt.Fprintf(cfg.Log, "sandboxtest: node %s ready (kubelet API https://%s, pod addresses %s)\n", cfg.Name, addr, p.ips.cidr)
	return n, nil
}

// Stop ends every pod's processes and the node's controllers. The Node
// object stays in the API; a later Start with the same name takes it over.
func (n *Node) Stop() {
	n.Provider.stopAll(5 * time.Second)
	n.cancel()
	select {
	case <-n.vk.Done():
	case <-time.After(10 * time.Second):
	}
	n.events.Shutdown()
	n.Provider.closeNetwork()
	if n.Provider.limits != nil {
		n.Provider.limits.close()
	}
}

// setUpIsolation decides once how this node's pods run, and says so: in
// namespaces when the machine allows, with the limits it can apply, on a
// network of their own; else on loopback addresses of the host.
func (p *Provider) setUpIsolation() error {
	if unisolated() {
		msg := fmt.Sprintf("sandboxtest: WARNING: %s is set: pods on node %s run WITHOUT isolation, as %s in your filesystem; "+
			"code under test can read and delete your files. Unset it to run every pod in its own namespaces.\n",
			UnisolatedEnv, p.cfg.Name, currentUser())
		fmt.Fprint(os.Stderr, msg)
		if p.cfg.Log != io.Writer(os.Stderr) {
			fmt.Fprint(p.cfg.Log, msg)
		}
		return p.useLoopback()
	}
	p.isolated = true
	if err := podinit.Check(); err != nil {
		p.sandboxErr = fmt.Errorf("sandboxtest: this machine does not let %s create user namespaces (%v), which the local node needs to make each pod a sandbox; "+
			"fix: allow unprivileged user namespaces (sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 23.10+, "+
			"kernel.unprivileged_userns_clone=1 on older Debian, user.max_user_namespaces>0), or use Kind (sandboxtest-setup kind create), "+
			"or run pods unconfined with %s=1 (not recommended)", currentUser(), err, UnisolatedEnv)
		fmt.Fprintf(p.cfg.Log, "%v\n", p.sandboxErr)
		return p.useLoopback()
	}
	if err := p.startNetwork(); err != nil {
		return fmt.Errorf("processnode: starting the pod network: %w", err)
	}
	pids := p.cfg.PodPidsLimit
	if pids <= 0 {
		pids = DefaultPodPidsLimit
	}
	p.limits = newLimiter(pids)
	fmt.Fprintf(p.cfg.Log, "sandboxtest: node %s: each pod in its own user, mount, PID, IPC, UTS and network namespaces "+
		"(pod network %s, no route to the host); limits: %s\n", p.cfg.Name, p.ips.cidr, p.limits.about)
	return nil
}

// useLoopback gives pods addresses of the host's loopback network.
func (p *Provider) useLoopback() error {
	ips, err := claimLoopbackBlock()
	if err != nil {
		return err
	}
	p.ips = ips
	return nil
}

func unisolated() bool {
	v := strings.ToLower(strings.TrimSpace(os.Getenv(UnisolatedEnv)))
	return v != "" && v != "false" && v != "0" && v != "no"
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return fmt.Sprintf("user %s (uid %d)", u.Username, os.Getuid())
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

// describeNode fills in what the scheduler and kube-apiserver need: capacity,
// the loopback address, and where the kubelet API listens.
func describeNode(nd *corev1.Node, port int) {
	nd.Labels[LocalNodeLabel] = "true"
	nd.Labels[corev1.LabelOSStable] = "linux"
	nd.Labels[corev1.LabelArchStable] = runtime.GOARCH
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		// Templates request ephemeral-storage (upstream's python template does);
		// without it in allocatable the scheduler finds the node insufficient.
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
		corev1.ResourcePods:             resource.MustParse("1000"),
	}
	nd.Status.Capacity, nd.Status.Allocatable = res, res
	// No Hostname address: kube-apiserver prefers it and the node name does not resolve.
	nd.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: loopbackHostIP}}
	nd.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	nd.Status.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion:  "v1.36.3-sandboxtest",
		OperatingSystem: "linux",
		Architecture:    runtime.GOARCH,
		OSImage:         "sandboxtest process node",
	}
	for i := range nd.Status.Conditions {
		if nd.Status.Conditions[i].Type != corev1.NodeReady {
			nd.Status.Conditions[i].Status = corev1.ConditionFalse
		}
	}
}

// kubeletTLS is the kubelet API's TLS: the given serving certificate, and
// client certificates ClientCA signed required.
func kubeletTLS(cfg Config) (*tls.Config, error) {
	if len(cfg.ServingCert) == 0 || len(cfg.ServingKey) == 0 || len(cfg.ClientCA) == 0 || cfg.APIServerUser == "" {
		return nil, errors.New("processnode: Config.ServingCert, ServingKey, ClientCA and APIServerUser are required: " +
			"the kubelet API runs commands in pods, and serves kube-apiserver only")
	}
	pair, err := tls.X509KeyPair(cfg.ServingCert, cfg.ServingKey)
	if err != nil {
		return nil, fmt.Errorf("processnode: kubelet serving certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cfg.ClientCA) {
		return nil, errors.New("processnode: ClientCA holds no PEM certificate")
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}

// onlyUser serves the requests whose verified client certificate's common
// name is user: a certificate from the right CA is not enough, since the
// cluster CA also signs every approved CSR.
func onlyUser(user, node string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := ""
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
			who = r.TLS.VerifiedChains[0][0].Subject.CommonName
		}
		if who != user {
			http.Error(w, fmt.Sprintf("Forbidden: user %q may not use the kubelet API of node %s (only %q may)", who, node, user), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
