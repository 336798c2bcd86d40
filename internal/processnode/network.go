package processnode

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// DefaultPodCIDR is the pod network when Config.PodCIDR is empty, as on Kind.
const DefaultPodCIDR = "10.244.0.0/16"

// startNetwork gives isolated pods a network of their own: the cluster
// network's namespace with a bridge for the pod CIDR, and, when the node
// knows kube-apiserver, the API at APIServiceIP:443 inside it, forwarded
// by the node (pods have no route to the host).
func (p *Provider) startNetwork() error {
	cidr := p.cfg.PodCIDR
	if cidr == "" {
		cidr = DefaultPodCIDR
	}
	ncfg := podinit.NetworkConfig{CIDR: cidr, Exe: p.cfg.PodBinary}
	forward := p.cfg.APIServer != "" && p.cfg.APIServiceIP != ""
	if forward {
		ncfg.LocalAddrs = []string{p.cfg.APIServiceIP}
	}
	n, err := podinit.StartNetwork(ncfg)
	if err != nil {
		return err
	}
	p.net, p.ips = n, newAddrPool(n.CIDR())
	if !forward {
		return nil
	}
	fail := func(err error) error {
		n.Close()
		p.net = nil
		return err
	}
	ln, err := n.Listen("tcp", net.JoinHostPort(p.cfg.APIServiceIP, "443"))
	if err != nil {
		return fail(err)
	}
	p.apiForward = ln
	go forwardAll(ln, p.cfg.APIServer)
	if p.cfg.Kubeconfig != "" {
		if p.podKubeconfig, err = writePodKubeconfig(p.cfg.Kubeconfig, p.cfg.Dir, "https://"+net.JoinHostPort(p.cfg.APIServiceIP, "443")); err != nil {
			ln.Close()
			return fail(err)
		}
	}
	return nil
}

// forwardAll relays each connection ln accepts to target, until ln closes.
func forwardAll(ln net.Listener, target string) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := (&net.Dialer{Timeout: 10 * time.Second}).Dial("tcp", target)
			if err != nil {
				return
			}
			defer out.Close()
			done := make(chan struct{})
			go func() { _, _ = io.Copy(out, in); closeWrite(out); close(done) }()
			_, _ = io.Copy(in, out)
			closeWrite(in)
			<-done
		}()
	}
}

// writePodKubeconfig copies the node's kubeconfig with the server that pods
// reach: the API server's Service address on the cluster network.
func writePodKubeconfig(src, dir, server string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(src)
	if err != nil {
		return "", fmt.Errorf("reading the kubeconfig for pods: %w", err)
	}
	for _, c := range cfg.Clusters {
		c.Server = server
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "pod-kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", err
	}
	return path, os.Chmod(path, 0o600)
}

// kubeconfigForPods is the kubeconfig handed to pods that talk to the API.
func (p *Provider) kubeconfigForPods() string {
	if p.podKubeconfig != "" {
		return p.podKubeconfig
	}
	return p.cfg.Kubeconfig
}

// dial reaches a pod address: through the cluster network when pods have
// one, else directly (their addresses are then the host's).
func (p *Provider) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if p.net != nil {
		return p.net.DialContext(ctx, network, addr)
	}
	return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
}

// probeClient is the HTTP client of readiness and liveness probes.
func (p *Provider) probeClient() *http.Client {
	p.probeOnce.Do(func() {
		p.probeHTTP = &http.Client{
			Transport: &http.Transport{
				DialContext:       p.dial,
				TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
				DisableKeepAlives: true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	})
	return p.probeHTTP
}

// DialContext connects to a pod address (podIP:port) from the host, as the
// node's port-forwards and probes do; pod addresses are not routed on the host.
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return n.Provider.dial(ctx, network, addr)
}

// closeNetwork ends the cluster network, after the pods.
func (p *Provider) closeNetwork() {
	if p.apiForward != nil {
		p.apiForward.Close()
	}
	if p.net != nil {
		p.net.Close()
	}
	p.ips.close()
}
