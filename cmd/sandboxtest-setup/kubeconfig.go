package main

import (
	"flag"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// loadKubeconfig loads path, or the standard rules ($KUBECONFIG, then
// ~/.kube/config) when path is empty, and returns the current context's name.
func loadKubeconfig(path string) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	raw, err := cc.RawConfig()
	if err != nil {
		return nil, "", fmt.Errorf("reading kubeconfig: %w", err)
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("no usable kubeconfig (%v); start a local cluster with: sandboxtest-setup local up", err)
	}
	return cfg, raw.CurrentContext, nil
}

// kubeconfigFlag registers --kubeconfig, read by loadKubeconfig.
func kubeconfigFlag(fs *flag.FlagSet, path *string) {
	fs.StringVar(path, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
}
