package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
	"github.com/agentsandbox/go-sandboxtest/internal/processnode"
)

// LocalStatus is `local status -o json|yaml`.
type LocalStatus struct {
	TypeMeta
	Dir        string `json:"dir"`
	State      string `json:"state"`         // ready, not ready or stopped
	Pid        int    `json:"pid,omitempty"` // of the serving process
	Server     string `json:"server,omitempty"`
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Nodes      int    `json:"nodes"`
	Pods       int    `json:"pods"`
	Problem    string `json:"problem,omitempty"` // why it is not ready
}

func localCommand() *cobra.Command {
	var dir string
	var timeout time.Duration
	var podCIDR string
	var serve localcluster.ServeOptions
	podCIDRFlag := func(fs *pflag.FlagSet) {
		fs.StringVar(&podCIDR, "pod-cidr", processnode.DefaultPodCIDR, "IPv4 network of the pods, in the cluster's own network namespace (clusters side by side may use the same)")
	}
	dirFlag := func(fs *pflag.FlagSet) {
		def, err := localcluster.DefaultDir()
		if err != nil {
			def = ""
		}
		fs.StringVar(&dir, "dir", def, "state directory of the local cluster (one cluster per directory)")
	}
	group := &cobra.Command{
		Use:   "local",
		Short: "run a local cluster: a real control plane with a node whose pods are local processes",
		Args:  subcommandArgs,
		RunE:  groupRun,
	}

	up := &cobra.Command{
		Use:   "up",
		Short: "start the local cluster in the background (or find the running one) and print its KUBECONFIG",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			start := time.Now()
			kc, err := localcluster.Up(c.Context(), localcluster.UpOptions{
				Dir: dir, Timeout: timeout, Log: os.Stderr,
				Command: []string{exe, "local", "serve", "--dir", dir, "--pod-cidr", podCIDR},
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "sandboxtest: local cluster up in %s; stop it with: sandboxtest-setup local down\n", time.Since(start).Round(100*time.Millisecond))
			fmt.Fprintf(c.OutOrStdout(), "export KUBECONFIG=%s\n", kc)
			return nil
		},
	}
	dirFlag(up.Flags())
	podCIDRFlag(up.Flags())
	up.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "give up when not ready after this long (the first run builds binaries for several minutes)")

	env := &cobra.Command{
		Use:   "env",
		Short: "print the export line for the running local cluster's KUBECONFIG",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			st := localcluster.GetStatus(c.Context(), dir)
			if !st.Ready {
				return failed(fmt.Errorf("no ready local cluster in %s (%s); run: sandboxtest-setup local up", dir, st.Problem))
			}
			fmt.Fprintf(c.OutOrStdout(), "export KUBECONFIG=%s\n", st.Kubeconfig)
			return nil
		},
	}
	dirFlag(env.Flags())

	status := &cobra.Command{
		Use:   "status",
		Short: "show whether the local cluster runs, and what it holds (exit 1 when it is not ready)",
		Args:  noArgs,
	}
	dirFlag(status.Flags())
	statusOut := newOutputFlag(status.Flags())
	status.RunE = func(c *cobra.Command, _ []string) error {
		st := localcluster.GetStatus(c.Context(), dir)
		doc := LocalStatus{TypeMeta: typeMeta("LocalStatus"), Dir: st.Dir, Pid: st.Pid, Server: st.Server, Kubeconfig: st.Kubeconfig, Nodes: st.Nodes, Pods: st.Pods, Problem: st.Problem}
		switch {
		case st.Pid == 0:
			doc.State = "stopped"
		case !st.Ready:
			doc.State = "not ready"
		default:
			doc.State = "ready"
		}
		out := c.OutOrStdout()
		if statusOut.structured() {
			if err := statusOut.print(out, doc); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(out, "dir:        %s\n", st.Dir)
			switch doc.State {
			case "stopped":
				fmt.Fprintf(out, "state:      stopped\n")
			case "not ready":
				fmt.Fprintf(out, "pid:        %d\nstate:      not ready: %s\n", st.Pid, st.Problem)
			default:
				fmt.Fprintf(out, "pid:        %d\nstate:      ready\nserver:     %s\nkubeconfig: %s\nnodes:      %d\npods:       %d\n", st.Pid, st.Server, st.Kubeconfig, st.Nodes, st.Pods)
			}
		}
		switch doc.State {
		case "stopped":
			return failed(fmt.Errorf("no local cluster runs in %s; run: sandboxtest-setup local up", dir))
		case "not ready":
			return failed(fmt.Errorf("the local cluster in %s is not ready", dir))
		}
		return nil
	}

	down := &cobra.Command{
		Use:   "down",
		Short: "stop the local cluster and remove its state",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			return localcluster.Down(localcluster.UpOptions{Dir: dir, Log: os.Stderr})
		},
	}
	dirFlag(down.Flags())

	build := &cobra.Command{
		Use:   "build",
		Short: "build (or find in the cache) the pinned binaries the local cluster runs, and list them",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			paths, err := (&localcluster.Builder{Log: os.Stderr}).Ensure(c.Context())
			if err != nil {
				return err
			}
			for _, name := range sortedKeys(paths) {
				fmt.Fprintf(c.OutOrStdout(), "%-24s %s\n", name, paths[name])
			}
			return nil
		},
	}

	serveCmd := &cobra.Command{
		Use:   "serve",
		Short: "run the local cluster in the foreground until interrupted (what 'up' and sandboxtest.Main start)",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return localcluster.Serve(c.Context(), localcluster.Options{Dir: dir, Log: os.Stderr, PodCIDR: podCIDR}, serve)
		},
	}
	dirFlag(serveCmd.Flags())
	podCIDRFlag(serveCmd.Flags())
	serveCmd.Flags().BoolVar(&serve.ExitWithStdin, "exit-with-stdin", false, "also stop when standard input closes (the parent process holding it is done or gone)")
	serveCmd.Flags().BoolVar(&serve.RemoveDir, "remove-dir", false, "remove the whole state directory, log included, on the way down (a temporary directory)")

	group.AddCommand(up, env, status, down, build, serveCmd)
	return group
}
