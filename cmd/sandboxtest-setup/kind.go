package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentsandbox/go-sandboxtest/fixtures"
	"github.com/agentsandbox/go-sandboxtest/internal/kindcluster"
	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
)

func kindCommand() *command {
	var opts kindcluster.Options
	var deployAfter bool
	nameFlag := func(fs *flag.FlagSet) {
		fs.StringVar(&opts.Name, "name", kindcluster.DefaultName, "name of the kind cluster (its kubeconfig context is kind-<name>)")
	}
	kubeconfigFlag := func(what string) func(fs *flag.FlagSet) {
		return func(fs *flag.FlagSet) {
			fs.StringVar(&opts.Kubeconfig, "kubeconfig", kindcluster.KubeconfigPath(""),
				"kubeconfig file the cluster's context is "+what+"; the default follows kind and kubectl: the first existing file of $KUBECONFIG, else ~/.kube/config")
		}
	}
	// explicit reports whether the flag was given, so that defaults shown in
	// the help are passed on as "unset" (kind's own defaulting then applies).
	explicit := func(fs *flag.FlagSet, name string) bool {
		set := false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
		return set
	}
	return &command{
		name:    "kind",
		summary: "create or delete a Kind cluster for sandboxtest (needs docker, podman or nerdctl)",
		sub: []*command{
			{
				name:    "create",
				summary: "create the Kind cluster (or reuse the one of that name) and merge its context into the kubeconfig",
				flags: func(fs *flag.FlagSet) {
					nameFlag(fs)
					fs.StringVar(&opts.NodeImage, "image", kindcluster.DefaultNodeImage, "node image (kind v0.33.0's default); exclusive with --kubernetes-version")
					fs.StringVar(&opts.KubernetesVersion, "kubernetes-version", "", `Kubernetes version, e.g. v1.33.1, for the node image kindest/node:<version>; exclusive with --image (default none: the --image default applies)`)
					kubeconfigFlag("merged into, as the current context")(fs)
					fs.DurationVar(&opts.Wait, "wait", 60*time.Second, "wait this long for the control plane to be ready (0: do not wait)")
					fs.BoolVar(&deployAfter, "deploy", false, "then install the agent-sandbox controller (install-controller) and deploy the router, templates and pools (deploy) into it")
				},
				run: func(ctx context.Context, fs *flag.FlagSet, out io.Writer) error {
					if !explicit(fs, "image") {
						opts.NodeImage = ""
					}
					if !explicit(fs, "kubeconfig") {
						opts.Kubeconfig = ""
					}
					if opts.Name == "" {
						opts.Name = kindcluster.DefaultName
					}
					opts.Log = os.Stderr
					start := time.Now()
					if err := kindcluster.Create(ctx, opts); err != nil {
						return err
					}
					fmt.Fprintf(os.Stderr, "sandboxtest: kind cluster %q ready in %s; delete it with: sandboxtest-setup kind delete --name %s\n",
						opts.Name, time.Since(start).Round(100*time.Millisecond), opts.Name)
					fmt.Fprintf(out, "context:    %s\nkubeconfig: %s\n", kindcluster.ContextName(opts.Name), kindcluster.KubeconfigPath(opts.Kubeconfig))
					if !deployAfter {
						return nil
					}
					return installAndDeploy(ctx, kindcluster.KubeconfigPath(opts.Kubeconfig), kindcluster.ContextName(opts.Name), out)
				},
			},
			{
				name:    "delete",
				summary: "delete the Kind cluster and remove its context from the kubeconfig",
				flags: func(fs *flag.FlagSet) {
					nameFlag(fs)
					kubeconfigFlag("removed from")(fs)
				},
				run: func(ctx context.Context, fs *flag.FlagSet, out io.Writer) error {
					if !explicit(fs, "kubeconfig") {
						opts.Kubeconfig = ""
					}
					opts.Log = os.Stderr
					if err := kindcluster.Delete(ctx, opts); err != nil {
						return err
					}
					fmt.Fprintf(out, "deleted kind cluster %q\n", opts.Name)
					return nil
				},
			},
		},
	}
}

// installAndDeploy installs the upstream controller into a fresh cluster,
// then deploys what suites need, as install-controller and deploy do.
func installAndDeploy(ctx context.Context, kubeconfig, contextName string, out io.Writer) error {
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: contextName}).ClientConfig()
	if err != nil {
		return fmt.Errorf("context %s in %s: %w", contextName, kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	modDir, err := localcluster.ModuleDir(ctx, "sigs.k8s.io/agent-sandbox", localcluster.AgentSandboxVersion)
	if err != nil {
		return err
	}
	if _, err := kube.InstallController(ctx, cfg, modDir, localcluster.AgentSandboxVersion); err != nil {
		return fmt.Errorf("installing the agent-sandbox controller: %w", err)
	}
	fmt.Fprintf(os.Stderr, "sandboxtest: agent-sandbox controller %s installed\n", localcluster.AgentSandboxVersion)
	rep, err := fixtures.Deploy(ctx, cfg, fixtures.DeployOptions{Log: os.Stderr})
	if err != nil {
		return err
	}
	printDeployReport(out, rep)
	return nil
}
