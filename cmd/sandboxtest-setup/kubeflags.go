package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// kubeFlags are kubectl's --kubeconfig, --context and -n/--namespace
// (cli-runtime's ConfigFlags, only those three: the rest of kubectl's
// connection flags would be untested surface here).
type kubeFlags struct {
	cf *genericclioptions.ConfigFlags
}

// newKubeFlags registers --kubeconfig and --context, and -n/--namespace
// with namespaceUsage when it is not empty.
func newKubeFlags(fs *pflag.FlagSet, namespaceUsage string) *kubeFlags {
	empty := func() *string { s := ""; return &s }
	cf := &genericclioptions.ConfigFlags{KubeConfig: empty(), Context: empty()}
	if namespaceUsage != "" {
		cf.Namespace = empty()
	}
	cf.AddFlags(fs)
	fs.Lookup("kubeconfig").Usage = "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)"
	fs.Lookup("context").Usage = "kubeconfig context to use (default: its current context)"
	if namespaceUsage != "" {
		fs.Lookup("namespace").Usage = namespaceUsage + " (default: $" + kube.EnvNamespace + ", then the kube context's namespace, then \"default\")"
	}
	return &kubeFlags{cf: cf}
}

// loader is the kubeconfig as the flags select it.
func (k *kubeFlags) loader() clientcmd.ClientConfig { return k.cf.ToRawKubeConfigLoader() }

// restConfig loads the cluster's configuration and names the context used.
// No kubeconfig at all is an unreachable cluster (exit 3), not kubectl's
// fallback to localhost:8080.
func (k *kubeFlags) restConfig() (*rest.Config, string, error) {
	cc := k.loader()
	raw, err := cc.RawConfig()
	if err != nil {
		return nil, "", unreachable(fmt.Errorf("reading kubeconfig %s: %w", k.source(), err))
	}
	name := raw.CurrentContext
	if *k.cf.Context != "" {
		name = *k.cf.Context
	}
	if len(raw.Contexts) == 0 {
		if os.Getenv("KUBERNETES_SERVICE_HOST") != "" { // in a pod: its service account
			cfg, err := cc.ClientConfig()
			if err != nil {
				return nil, "", unreachable(fmt.Errorf("no kubeconfig, and the in-cluster configuration failed: %w", err))
			}
			return cfg, "", nil
		}
		return nil, "", unreachable(fmt.Errorf("no kubeconfig with a context (looked in %s); start a local cluster with: sandboxtest-setup local up, then export the KUBECONFIG it prints", k.source()))
	}
	if name == "" {
		return nil, "", usageErrorf("kubeconfig %s sets no current-context; pass --context (contexts: %s)", k.source(), strings.Join(sortedKeys(raw.Contexts), ", "))
	}
	if _, ok := raw.Contexts[name]; !ok {
		return nil, "", usageErrorf("context %q is not in kubeconfig %s (contexts: %s)", name, k.source(), strings.Join(sortedKeys(raw.Contexts), ", "))
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", unreachable(fmt.Errorf("no usable kubeconfig (%v); start a local cluster with: sandboxtest-setup local up", err))
	}
	return cfg, name, nil
}

// namespace applies the shared rule (kube.ResolveNamespace) to -n and the
// selected context.
func (k *kubeFlags) namespace() string {
	explicit := ""
	if k.cf.Namespace != nil {
		explicit = *k.cf.Namespace
	}
	ns, _ := kube.ResolveNamespace(explicit, kube.ContextNamespace(k.loader(), *k.cf.Context))
	return ns
}

// source names the kubeconfig file the loading rules read first.
func (k *kubeFlags) source() string {
	if *k.cf.KubeConfig != "" {
		return *k.cf.KubeConfig
	}
	if env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar); env != "" {
		return env
	}
	return clientcmd.RecommendedHomeFile
}

// clusterError drops the library's "sandboxtest: " prefix (the command
// prints its own) and, for an unreachable cluster, says which kubeconfig
// named it and how to get a cluster (exit 3).
func (k *kubeFlags) clusterError(err error) error {
	var u *kube.UnreachableError
	if errors.As(err, &u) {
		return unreachable(fmt.Errorf("cannot reach the cluster at %s (from kubeconfig %s): %v; start a local cluster with: sandboxtest-setup local up",
			u.Server, k.source(), u.Err))
	}
	return &exitError{exitCode(err), errors.New(strings.TrimPrefix(err.Error(), "sandboxtest: "))}
}
