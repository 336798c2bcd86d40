package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentsandbox/go-sandboxtest/fixtures"
	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

func deployCommand() *command {
	var kubeconfig string
	var templates stringList
	var routerReplicas, poolReplicas, gatewayPort int
	var wait time.Duration
	opts := fixtures.DeployOptions{}
	return &command{
		name:    "deploy",
		summary: "deploy the sandbox router, templates with warm pools, and optionally a Gateway",
		flags: func(fs *flag.FlagSet) {
			kubeconfigFlag(fs, &kubeconfig)
			fs.StringVar(&opts.Namespace, "namespace", "default", "namespace to deploy into (created when missing)")
			fs.StringVar(&opts.RouterNamespace, "router-namespace", "", "namespace of the router and --gateway, e.g. agent-sandbox-system; tests then set SANDBOXTEST_ROUTER_NAMESPACE (default: --namespace)")
			fs.Var(&templates, "templates", "SandboxTemplate YAML file or directory to add to the embedded templates, replacing those of the same name; repeatable or comma-separated (default: the embedded templates only)")
			fs.StringVar(&opts.RouterImage, "router-image", fixtures.DefaultRouterImage, "sandbox-router image")
			fs.IntVar(&routerReplicas, "router-replicas", 1, "router replicas")
			fs.IntVar(&poolReplicas, "pool-replicas", 0, "warm sandboxes per template (0: each claim cold-starts)")
			fs.StringVar(&opts.Gateway, "gateway", "", "also create a Gateway of this name with an HTTPRoute to the router (default: none)")
			fs.StringVar(&opts.GatewayClass, "gateway-class", "", "GatewayClass of --gateway (default: "+kube.LocalGatewayClass+" on the local cluster, required elsewhere)")
			fs.IntVar(&gatewayPort, "gateway-port", 0, "HTTP listener port of --gateway (default: 8080 on "+kube.LocalGatewayClass+", else 80)")
			fs.DurationVar(&wait, "wait", fixtures.DefaultDeployWait, "how long to wait for a Ready router pod and ready pools (0: don't wait)")
		},
		run: func(ctx context.Context, _ *flag.FlagSet, out io.Writer) error {
			if routerReplicas < 1 {
				return fmt.Errorf("--router-replicas must be at least 1, got %d", routerReplicas)
			}
			cfg, _, err := loadKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			// A deploy is a short burst of a few dozen requests; client-go's
			// default 5 QPS would make it wait on itself for seconds.
			cfg.QPS, cfg.Burst = 50, 100
			opts.TemplatePaths = templates
			opts.RouterReplicas, opts.PoolReplicas, opts.GatewayPort = int32(routerReplicas), int32(poolReplicas), int32(gatewayPort)
			opts.Wait = wait
			if wait == 0 {
				opts.Wait = -1 // DeployOptions: negative means don't wait
			}
			opts.Log = os.Stderr
			rep, err := fixtures.Deploy(ctx, cfg, opts)
			if rep != nil && len(rep.Objects) > 0 {
				printDeployReport(out, rep) // also on failure: what was applied, and how far it got
			}
			if err != nil {
				return clusterError(err, kubeconfig)
			}
			where := "namespace " + rep.Namespace
			if rep.RouterNamespace != rep.Namespace {
				where += " (router in namespace " + rep.RouterNamespace + ")"
			}
			if rep.Local {
				where += " of the local cluster"
			}
			fmt.Fprintf(out, "deployed to %s in %s\n", where, rep.Duration.Round(100*time.Millisecond))
			return nil
		},
	}
}

func printDeployReport(w io.Writer, rep *fixtures.DeployReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tRESULT\tSTATE")
	for _, o := range rep.Objects {
		name := o.Name
		if o.Namespace != "" {
			name = o.Namespace + "/" + o.Name
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Kind, name, o.Result, o.State)
	}
	tw.Flush()
}

// clusterError drops the library's "sandboxtest: " prefix (the command
// prints its own) and, for an unreachable cluster, says which kubeconfig
// named it and how to get a cluster.
func clusterError(err error, kubeconfigFlag string) error {
	var unreachable *kube.UnreachableError
	if errors.As(err, &unreachable) {
		return fmt.Errorf("cannot reach the cluster at %s (from kubeconfig %s): %v; start a local cluster with: sandboxtest-setup local up",
			unreachable.Server, kubeconfigSource(kubeconfigFlag), unreachable.Err)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "sandboxtest: "))
}

// kubeconfigSource names the file the loading rules read first.
func kubeconfigSource(flagPath string) string {
	if flagPath != "" {
		return flagPath
	}
	if env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar); env != "" {
		return env
	}
	return clientcmd.RecommendedHomeFile
}

// stringList is a flag that may be repeated, each value also split at commas.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
