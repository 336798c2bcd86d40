package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
)

func installControllerCommand() *cobra.Command {
	var version string
	c := &cobra.Command{
		Use:   "install-controller",
		Short: "install the upstream agent-sandbox controller with extensions (CRDs, RBAC, Deployment)",
		Args:  noArgs,
	}
	fs := c.Flags()
	kf := newKubeFlags(fs, "")
	fs.StringVar(&version, "version", localcluster.AgentSandboxVersion, "agent-sandbox release whose manifests and published controller image to install")
	c.RunE = func(c *cobra.Command, _ []string) error {
		ctx, out := c.Context(), c.OutOrStdout()
		cfg, _, err := kf.restConfig()
		if err != nil {
			return err
		}
		cfg.QPS, cfg.Burst = 50, 100 // a short burst of applies, as in deploy
		if err := kube.CheckReachable(ctx, cfg); err != nil {
			return kf.clusterError(err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		local, err := kube.IsLocalCluster(ctx, cs)
		if err != nil {
			return err
		}
		if local {
			// Its control plane runs the controller it built (with
			// --extensions); a second one in a pod would fight it.
			fmt.Fprintf(out, "the local cluster already runs the agent-sandbox controller %s with extensions; nothing to install\n", localcluster.AgentSandboxVersion)
			return nil
		}
		modDir, err := localcluster.ModuleDir(ctx, "sigs.k8s.io/agent-sandbox", version)
		if err != nil {
			return unreachable(err) // the module proxy
		}
		applied, err := kube.InstallController(ctx, cfg, modDir, version)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tNAME\tRESULT")
		for _, a := range applied {
			name := a.Name
			if a.Namespace != "" {
				name = a.Namespace + "/" + a.Name
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Kind, name, a.Result)
		}
		tw.Flush()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "installed agent-sandbox %s (image %s); check it with: sandboxtest-setup doctor\n", version, kube.ControllerImage(version))
		return nil
	}
	return c
}
