package localcluster

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/agentsandbox/go-sandboxtest/internal/processnode"
	"github.com/agentsandbox/go-sandboxtest/internal/setupbin"
)

// Cluster is the whole local cluster: the control plane plus the process node.
type Cluster struct {
	*ControlPlane
	Node *processnode.Node

	stopGateways context.CancelFunc
	gatewaysDone <-chan struct{}
	stopOnce     sync.Once
	stopErr      error
	signals      chan os.Signal
}

// Start starts the control plane and the process node and returns once the
// node is Ready. Runners, when non-nil, adds runners to the default registry
// (router and python runtime) before the node starts.
//
// Children stop on Stop, on SIGINT/SIGTERM of this process (Stop runs, then
// the signal is re-raised), and with this process if it is SIGKILLed (Pdeathsig).
func Start(ctx context.Context, opts Options, runners func(*processnode.Registry)) (*Cluster, error) {
	started := time.Now()
	podBin := make(chan string, 1) // found or built while the control plane starts
	go func() { podBin <- podBinary(ctx, opts) }()
	cp, err := StartControlPlane(ctx, opts)
	if err != nil {
		return nil, err
	}
	c := &Cluster{ControlPlane: cp}
	if !opts.OwnSignals {
		c.watchSignals()
	}
	cs, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		c.Stop()
		return nil, err
	}
	reg := processnode.DefaultRegistry(cp.Binaries[BinRouter])
	if runners != nil {
		runners(reg)
	}
	// kube-apiserver checks the kubelet's certificate against the cluster CA
	// (--kubelet-certificate-authority) at the node's address.
	servingCert, servingKey, err := cp.Certs.CA().Issue(CertRequest{
		CommonName: "system:node:" + processnode.DefaultName,
		IPs:        []net.IP{net.ParseIP("127.0.0.1")},
		Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("localcluster: issuing the node's kubelet serving certificate: %w", err)
	}
	c.Node, err = processnode.Start(ctx, processnode.Config{
		Client:        cs,
		Kubeconfig:    cp.Kubeconfig,
		Dir:           filepath.Join(cp.Dir, "node"),
		Runners:       reg,
		ServingCert:   servingCert,
		ServingKey:    servingKey,
		ClientCA:      cp.Certs.CA().CertPEM(),
		APIServerUser: KubeletClientUser,
		Log:           cp.log,
		PodCIDR:       opts.PodCIDR,
		PodBinary:     <-podBin,
		APIServer:     strings.TrimPrefix(cp.APIServerURL, "https://"),
		APIServiceIP:  kubernetesServiceIP().String(),
	})
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("localcluster: starting the process node: %w", err)
	}
	if err := waitSchedulable(ctx, cs, c.timeout); err != nil {
		c.Stop()
		return nil, err
	}
	var gwCtx context.Context
	gwCtx, c.stopGateways = context.WithCancel(context.Background())
	// Pods listen on host loopback addresses today, so a plain dialer
	// reaches them; the Gateway data plane dials pods only through this.
	dialPod := c.Node.DialContext // pod addresses are routed in the cluster's network only
	if c.gatewaysDone, err = startGatewayController(gwCtx, cp.RESTConfig, dialPod); err != nil {
		c.Stop()
		return nil, fmt.Errorf("localcluster: starting the gateway controller: %w", err)
	}
	c.logf("local cluster ready in %s; export KUBECONFIG=%s", since(started), cp.Kubeconfig)
	return c, nil
}

// Stop stops the node's pods, the node and the control plane. Idempotent.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		if c.signals != nil {
			signal.Stop(c.signals)
			close(c.signals)
		}
		if c.stopGateways != nil {
			c.stopGateways()
		}
		if c.gatewaysDone != nil {
			<-c.gatewaysDone // the Gateways' listeners are closed
		}
		if c.Node != nil {
			c.Node.Stop()
		}
		c.stopErr = c.ControlPlane.Stop()
	})
	return c.stopErr
}

// watchSignals stops the cluster on SIGINT/SIGTERM, then lets the signal do
// what it would have done, so a ^C'd test run leaves nothing behind.
func (c *Cluster) watchSignals() {
	c.signals = make(chan os.Signal, 1)
	signal.Notify(c.signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig, ok := <-c.signals
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "sandboxtest: %v: stopping the local cluster\n", sig)
		c.Stop()
		signal.Reset(sig)
		_ = syscall.Kill(os.Getpid(), sig.(syscall.Signal))
	}()
}

// Pids lists every process the cluster runs: control plane components and
// the node's container processes.
func (c *Cluster) Pids() []int {
	c.ControlPlane.mu.Lock()
	var pids []int
	for _, p := range c.ControlPlane.procs {
		pids = append(pids, p.Pid())
	}
	c.ControlPlane.mu.Unlock()
	if c.Node != nil {
		pids = append(pids, c.Node.Provider.Pids()...)
	}
	return pids
}

// waitSchedulable waits until the node has lost the not-ready taint that
// kube-controller-manager puts on new nodes: until then every pod (and so
// every sandbox) is Unschedulable.
func waitSchedulable(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, processnode.DefaultName, metav1.GetOptions{})
		if err == nil {
			last = "no taints"
			tainted := false
			for _, t := range n.Spec.Taints {
				if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
					tainted, last = true, fmt.Sprintf("taint %s:%s", t.Key, t.Effect)
				}
			}
			if !tainted {
				return nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localcluster: node %s not schedulable after %s (last state: %s)", processnode.DefaultName, timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// podBinary is the executable of the node's pod processes: opts.PodBinary,
// else a sandboxtest-pod built from this module's source; failing that ("",
// said in the log), the node's own binary, which serves the same roles.
func podBinary(ctx context.Context, opts Options) string {
	if opts.PodBinary != "" {
		return opts.PodBinary
	}
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	p, err := setupbin.PodBinary(ctx, setupbin.Options{Log: log})
	if err != nil {
		fmt.Fprintf(log, "sandboxtest: pods run from the node's own binary, not sandboxtest-pod: %v\n", err)
		return ""
	}
	return p
}
