package main

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentsandbox/go-sandboxtest/fixtures"
	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// DeployReport is `deploy -o json|yaml`, also printed when the deploy
// failed part way (Error says why; Objects is what was applied).
type DeployReport struct {
	TypeMeta
	Namespace       string         `json:"namespace"`
	RouterNamespace string         `json:"routerNamespace"`
	Local           bool           `json:"local"` // the cluster is sandboxtest's local cluster
	Templates       []string       `json:"templates"`
	Objects         []DeployObject `json:"objects"`
	DurationSeconds float64        `json:"durationSeconds"` // waiting included
	Error           string         `json:"error,omitempty"`
}

// DeployObject is one applied object.
type DeployObject struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"` // empty when cluster-scoped
	Name      string `json:"name"`
	Result    string `json:"result"` // created, configured or unchanged
	State     string `json:"state"`  // readiness where it applies ("1/1 ready"), else "-"
}

func deployCommand() *cobra.Command {
	var templates []string
	var routerReplicas, poolReplicas, gatewayPort int
	var wait bool
	var timeout time.Duration
	opts := fixtures.DeployOptions{}
	c := &cobra.Command{
		Use:   "deploy",
		Short: "deploy the sandbox router, templates with warm pools, and optionally a Gateway",
		Args:  noArgs,
	}
	fs := c.Flags()
	kf := newKubeFlags(fs, "namespace to deploy into (created when missing)")
	out := newOutputFlag(fs)
	fs.StringVar(&opts.RouterNamespace, "router-namespace", "", "namespace of the router and --gateway, e.g. agent-sandbox-system; tests then set SANDBOXTEST_ROUTER_NAMESPACE (default: --namespace)")
	fs.StringSliceVar(&templates, "templates", nil, "SandboxTemplate YAML file or directory to add to the embedded templates, replacing those of the same name; repeatable or comma-separated (default: the embedded templates only)")
	fs.StringVar(&opts.RouterImage, "router-image", fixtures.DefaultRouterImage, "sandbox-router image")
	fs.IntVar(&routerReplicas, "router-replicas", 1, "router replicas")
	fs.IntVar(&poolReplicas, "pool-replicas", 0, "warm sandboxes per template (0: each claim cold-starts)")
	fs.StringVar(&opts.Gateway, "gateway", "", "also create a Gateway of this name with an HTTPRoute to the router (default: none)")
	fs.StringVar(&opts.GatewayClass, "gateway-class", "", "GatewayClass of --gateway (default: "+kube.LocalGatewayClass+" on the local cluster, required elsewhere)")
	fs.IntVar(&gatewayPort, "gateway-port", 0, "HTTP listener port of --gateway (default: 8080 on "+kube.LocalGatewayClass+", else 80)")
	fs.BoolVar(&wait, "wait", true, "wait for a Ready router pod and ready pools")
	fs.DurationVar(&timeout, "timeout", fixtures.DefaultDeployWait, "how long --wait waits")
	fs.BoolVar(&opts.Force, "force", false, "take over existing objects sandboxtest did not create (a template or pool of the same name is replaced)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if routerReplicas < 1 {
			return usageErrorf("--router-replicas must be at least 1, got %d", routerReplicas)
		}
		if wait && timeout <= 0 {
			return usageErrorf("--timeout must be positive, got %s; to not wait, use --wait=false", timeout)
		}
		cfg, _, err := kf.restConfig()
		if err != nil {
			return err
		}
		// A deploy is a short burst of a few dozen requests; client-go's
		// default 5 QPS would make it wait on itself for seconds.
		cfg.QPS, cfg.Burst = 50, 100
		opts.Namespace = kf.namespace()
		opts.TemplatePaths = templates
		opts.RouterReplicas, opts.PoolReplicas, opts.GatewayPort = int32(routerReplicas), int32(poolReplicas), int32(gatewayPort)
		opts.Wait = timeout
		if !wait {
			opts.Wait = -1 // DeployOptions: negative means don't wait
		}
		opts.Log = os.Stderr
		rep, err := fixtures.Deploy(c.Context(), cfg, opts)
		w := c.OutOrStdout()
		if out.structured() {
			if rep != nil {
				if perr := out.print(w, deployDocument(rep, err)); perr != nil {
					return perr
				}
			}
		} else if rep != nil && len(rep.Objects) > 0 {
			printDeployReport(w, rep) // also on failure: what was applied, and how far it got
		}
		if err != nil {
			return kf.clusterError(err)
		}
		if !out.structured() {
			where := "namespace " + rep.Namespace
			if rep.RouterNamespace != rep.Namespace {
				where += " (router in namespace " + rep.RouterNamespace + ")"
			}
			if rep.Local {
				where += " of the local cluster"
			}
			fmt.Fprintf(w, "deployed to %s in %s\n", where, rep.Duration.Round(100*time.Millisecond))
		}
		return nil
	}
	return c
}

func deployDocument(rep *fixtures.DeployReport, err error) DeployReport {
	doc := DeployReport{TypeMeta: typeMeta("DeployReport"), Namespace: rep.Namespace, RouterNamespace: rep.RouterNamespace,
		Local: rep.Local, Templates: rep.Templates, Objects: []DeployObject{}, DurationSeconds: rep.Duration.Seconds()}
	for _, o := range rep.Objects {
		doc.Objects = append(doc.Objects, DeployObject{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Result: string(o.Result), State: o.State})
	}
	if err != nil {
		doc.Error = err.Error()
	}
	return doc
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
