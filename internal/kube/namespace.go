package kube

import (
	"os"

	"k8s.io/client-go/tools/clientcmd"
)

// EnvNamespace names the variable that sets the namespace of templates,
// pools and claims when no flag or option does.
const EnvNamespace = "SANDBOXTEST_NAMESPACE"

// DefaultNamespace is the namespace when nothing else names one.
const DefaultNamespace = "default"

// Where a namespace came from, as ResolveNamespace reports it.
const (
	NamespaceFromFlag    = "flag"
	NamespaceFromEnv     = EnvNamespace
	NamespaceFromContext = "kube context"
	NamespaceFromDefault = "default"
)

// ResolveNamespace is the one rule the CLI and the library share: explicit
// (a flag or an option) if set, then $SANDBOXTEST_NAMESPACE, then the kube
// context's namespace, then "default". It returns the namespace and which
// of those gave it.
func ResolveNamespace(explicit, contextNamespace string) (namespace, source string) {
	switch {
	case explicit != "":
		return explicit, NamespaceFromFlag
	case os.Getenv(EnvNamespace) != "":
		return os.Getenv(EnvNamespace), NamespaceFromEnv
	case contextNamespace != "":
		return contextNamespace, NamespaceFromContext
	}
	return DefaultNamespace, NamespaceFromDefault
}

// ContextNamespace is the namespace set on the context cc uses (its
// current context, or the one overrides name), "" when none is set or the
// kubeconfig cannot be read.
func ContextNamespace(cc clientcmd.ClientConfig, contextOverride string) string {
	raw, err := cc.RawConfig()
	if err != nil {
		return ""
	}
	name := raw.CurrentContext
	if contextOverride != "" {
		name = contextOverride
	}
	if c, ok := raw.Contexts[name]; ok && c != nil {
		return c.Namespace
	}
	return ""
}
