package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentsandbox/go-sandboxtest/fixtures"
	"github.com/agentsandbox/go-sandboxtest/internal/kindcluster"
	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
)

func kindCommand() *cobra.Command {
	var opts kindcluster.Options
	var deployAfter, wait bool
	var timeout time.Duration
	nameFlag := func(fs *pflag.FlagSet) {
		fs.StringVar(&opts.Name, "name", kindcluster.DefaultName, "name of the kind cluster (its kubeconfig context is kind-<name>)")
	}
	kubeconfigFlag := func(fs *pflag.FlagSet, what string) {
		fs.StringVar(&opts.Kubeconfig, "kubeconfig", kindcluster.KubeconfigPath(""),
			"kubeconfig file the cluster's context is "+what+"; the default follows kind and kubectl: the first existing file of $KUBECONFIG, else ~/.kube/config")
	}
	// kindError marks a missing container runtime as an unreachable
	// dependency (exit 3).
	kindError := func(err error) error {
		if errors.Is(err, kindcluster.ErrNoRuntime) {
			return unreachable(err)
		}
		return err
	}
	group := &cobra.Command{
		Use:   "kind",
		Short: "create or delete a Kind cluster for sandboxtest (needs docker, podman or nerdctl)",
		Args:  subcommandArgs,
		RunE:  groupRun,
	}

	create := &cobra.Command{
		Use:   "create",
		Short: "create the Kind cluster (or reuse the one of that name) and merge its context into the kubeconfig",
		Args:  noArgs,
	}
	fs := create.Flags()
	nameFlag(fs)
	fs.StringVar(&opts.NodeImage, "image", kindcluster.DefaultNodeImage, "node image (kind v0.33.0's default); exclusive with --kubernetes-version")
	fs.StringVar(&opts.KubernetesVersion, "kubernetes-version", "", `Kubernetes version, e.g. v1.33.1, for the node image kindest/node:<version>; exclusive with --image (default none: the --image default applies)`)
	kubeconfigFlag(fs, "merged into, as the current context")
	fs.BoolVar(&wait, "wait", true, "wait for the control plane to be ready")
	fs.DurationVar(&timeout, "timeout", 60*time.Second, "how long --wait waits")
	fs.BoolVar(&deployAfter, "deploy", false, "then install the agent-sandbox controller (install-controller) and deploy the router, templates and pools (deploy) into it")
	create.RunE = func(c *cobra.Command, _ []string) error {
		// Defaults shown in the help are passed on as "unset", so that
		// kind's own defaulting applies.
		if explicit(c.Flags(), "image") && opts.KubernetesVersion != "" {
			return usageErrorf("--image and --kubernetes-version both set; set one of them")
		}
		if !explicit(c.Flags(), "image") {
			opts.NodeImage = ""
		}
		if !explicit(c.Flags(), "kubeconfig") {
			opts.Kubeconfig = ""
		}
		if opts.Name == "" {
			opts.Name = kindcluster.DefaultName
		}
		if wait && timeout <= 0 {
			return usageErrorf("--timeout must be positive, got %s; to not wait, use --wait=false", timeout)
		}
		opts.Wait = 0
		if wait {
			opts.Wait = timeout
		}
		opts.Log = os.Stderr
		start := time.Now()
		if err := kindcluster.Create(c.Context(), opts); err != nil {
			return kindError(err)
		}
		fmt.Fprintf(os.Stderr, "sandboxtest: kind cluster %q ready in %s; delete it with: sandboxtest-setup kind delete --name %s\n",
			opts.Name, time.Since(start).Round(100*time.Millisecond), opts.Name)
		out := c.OutOrStdout()
		fmt.Fprintf(out, "context:    %s\nkubeconfig: %s\n", kindcluster.ContextName(opts.Name), kindcluster.KubeconfigPath(opts.Kubeconfig))
		if !deployAfter {
			return nil
		}
		return installAndDeploy(c.Context(), kindcluster.KubeconfigPath(opts.Kubeconfig), kindcluster.ContextName(opts.Name), out)
	}

	del := &cobra.Command{
		Use:   "delete",
		Short: "delete the Kind cluster and remove its context from the kubeconfig",
		Args:  noArgs,
	}
	nameFlag(del.Flags())
	kubeconfigFlag(del.Flags(), "removed from")
	del.RunE = func(c *cobra.Command, _ []string) error {
		if !explicit(c.Flags(), "kubeconfig") {
			opts.Kubeconfig = ""
		}
		opts.Log = os.Stderr
		if err := kindcluster.Delete(c.Context(), opts); err != nil {
			return kindError(err)
		}
		fmt.Fprintf(c.OutOrStdout(), "deleted kind cluster %q\n", opts.Name)
		return nil
	}
	group.AddCommand(create, del)
	return group
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
		return unreachable(err) // the module proxy
	}
	if _, err := kube.InstallController(ctx, cfg, modDir, localcluster.AgentSandboxVersion); err != nil {
		return fmt.Errorf("installing the agent-sandbox controller: %w", err)
	}
	fmt.Fprintf(os.Stderr, "sandboxtest: agent-sandbox controller %s installed\n", localcluster.AgentSandboxVersion)
	ns, _ := kube.ResolveNamespace("", "") // the new context names none
	rep, err := fixtures.Deploy(ctx, cfg, fixtures.DeployOptions{Namespace: ns, Log: os.Stderr})
	if err != nil {
		return err
	}
	printDeployReport(out, rep)
	return nil
}
