package kube

import (
	"testing"

	"gotest.tools/v3/assert"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestResolveNamespaceOrder(t *testing.T) {
	for _, tc := range []struct {
		name, explicit, env, context string
		want, source                 string
	}{
		{name: "flag first", explicit: "f", env: "e", context: "c", want: "f", source: NamespaceFromFlag},
		{name: "then the variable", env: "e", context: "c", want: "e", source: NamespaceFromEnv},
		{name: "then the context", context: "c", want: "c", source: NamespaceFromContext},
		{name: "then default", want: "default", source: NamespaceFromDefault},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvNamespace, tc.env)
			ns, source := ResolveNamespace(tc.explicit, tc.context)
			assert.Equal(t, ns, tc.want)
			assert.Equal(t, source, tc.source)
		})
	}
}

func TestContextNamespace(t *testing.T) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "x"}
	cfg.Contexts["plain"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.Contexts["team"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u", Namespace: "team-ns"}
	cfg.CurrentContext = "team"
	cc := clientcmd.NewDefaultClientConfig(*cfg, &clientcmd.ConfigOverrides{})
	assert.Equal(t, ContextNamespace(cc, ""), "team-ns")
	assert.Equal(t, ContextNamespace(cc, "plain"), "")
	assert.Equal(t, ContextNamespace(cc, "missing"), "")
}
