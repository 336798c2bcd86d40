package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// kubeFlags are kubectl's --kubeconfig, --context and -n/--namespace, read
// with client-go's clientcmd loading rules as kubectl reads them. (Not
// cli-runtime's ConfigFlags: it drags in kustomize, whose plugin loader
// makes the linker export every symbol of this binary and keep every
// method, so the local cluster's node, which runs from this binary, mapped
// tens of MB more of it.)
type kubeFlags struct {
	kubeconfig, context, explicitNamespace string
}

// newKubeFlags registers --kubeconfig and --context, and -n/--namespace
// with namespaceUsage when it is not empty.
func newKubeFlags(fs *pflag.FlagSet, namespaceUsage string) *kubeFlags {
	k := &kubeFlags{}
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&k.context, "context", "", "kubeconfig context to use (default: its current context)")
	if namespaceUsage != "" {
		fs.StringVarP(&k.explicitNamespace, "namespace", "n", "", namespaceUsage+" (default: $"+kube.EnvNamespace+", then the kube context's namespace, then \"default\")")
	}
	return k
}

// loader is the kubeconfig as the flags select it.
func (k *kubeFlags) loader() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context})
}

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
	if k.context != "" {
		name = k.context
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
	ns, _ := kube.ResolveNamespace(k.explicitNamespace, kube.ContextNamespace(k.loader(), k.context))
	return ns
}

// source names the kubeconfig file the loading rules read first.
func (k *kubeFlags) source() string {
	if k.kubeconfig != "" {
		return k.kubeconfig
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
