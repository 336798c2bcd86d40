package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
)

func localCommand() *command {
	var dir string
	var timeout time.Duration
	var serve localcluster.ServeOptions
	dirFlag := func(fs *flag.FlagSet) {
		def, err := localcluster.DefaultDir()
		if err != nil {
			def = ""
		}
		fs.StringVar(&dir, "dir", def, "state directory of the local cluster (one cluster per directory)")
	}
	return &command{
		name:    "local",
		summary: "run a local cluster: a real control plane with a node whose pods are local processes",
		sub: []*command{
			{
				name:    "up",
				summary: "start the local cluster in the background (or find the running one) and print its KUBECONFIG",
				flags: func(fs *flag.FlagSet) {
					dirFlag(fs)
					fs.DurationVar(&timeout, "timeout", 30*time.Minute, "give up when not ready after this long (the first run builds binaries for several minutes)")
				},
				run: func(ctx context.Context, _ *flag.FlagSet, out io.Writer) error {
					exe, err := os.Executable()
					if err != nil {
						return err
					}
					start := time.Now()
					kc, err := localcluster.Up(ctx, localcluster.UpOptions{
						Dir: dir, Timeout: timeout, Log: os.Stderr,
						Command: []string{exe, "local", "serve", "--dir", dir},
					})
					if err != nil {
						return err
					}
					fmt.Fprintf(os.Stderr, "sandboxtest: local cluster up in %s; stop it with: sandboxtest-setup local down\n", time.Since(start).Round(100*time.Millisecond))
					fmt.Fprintf(out, "export KUBECONFIG=%s\n", kc)
					return nil
				},
			},
			{
				name:    "env",
				summary: "print the export line for the running local cluster's KUBECONFIG",
				flags:   dirFlag,
				run: func(ctx context.Context, _ *flag.FlagSet, out io.Writer) error {
					st := localcluster.GetStatus(ctx, dir)
					if !st.Ready {
						return fmt.Errorf("no ready local cluster in %s (%s); run: sandboxtest-setup local up", dir, st.Problem)
					}
					fmt.Fprintf(out, "export KUBECONFIG=%s\n", st.Kubeconfig)
					return nil
				},
			},
			{
				name:    "status",
				summary: "show whether the local cluster runs, and what it holds",
				flags:   dirFlag,
				run: func(ctx context.Context, _ *flag.FlagSet, out io.Writer) error {
					st := localcluster.GetStatus(ctx, dir)
					fmt.Fprintf(out, "dir:        %s\n", st.Dir)
					if st.Pid == 0 {
						fmt.Fprintf(out, "state:      stopped\n")
						return fmt.Errorf("no local cluster runs in %s; run: sandboxtest-setup local up", dir)
					}
					fmt.Fprintf(out, "pid:        %d\n", st.Pid)
					if !st.Ready {
						fmt.Fprintf(out, "state:      not ready: %s\n", st.Problem)
						return fmt.Errorf("the local cluster in %s is not ready", dir)
					}
					fmt.Fprintf(out, "state:      ready\nserver:     %s\nkubeconfig: %s\nnodes:      %d\npods:       %d\n", st.Server, st.Kubeconfig, st.Nodes, st.Pods)
					return nil
				},
			},
			{
				name:    "down",
				summary: "stop the local cluster and remove its state",
				flags:   dirFlag,
				run: func(context.Context, *flag.FlagSet, io.Writer) error {
					return localcluster.Down(localcluster.UpOptions{Dir: dir, Log: os.Stderr})
				},
			},
			{
				name:    "build",
				summary: "build (or find in the cache) the pinned binaries the local cluster runs, and list them",
				run: func(ctx context.Context, _ *flag.FlagSet, out io.Writer) error {
					paths, err := (&localcluster.Builder{Log: os.Stderr}).Ensure(ctx)
					if err != nil {
						return err
					}
					for _, name := range sortedKeys(paths) {
						fmt.Fprintf(out, "%-24s %s\n", name, paths[name])
					}
					return nil
				},
			},
			{
				name:    "serve",
				summary: "run the local cluster in the foreground until interrupted (what 'up' and sandboxtest.Main start)",
				flags: func(fs *flag.FlagSet) {
					dirFlag(fs)
					fs.BoolVar(&serve.ExitWithStdin, "exit-with-stdin", false, "also stop when standard input closes (the parent process holding it is done or gone)")
					fs.BoolVar(&serve.RemoveDir, "remove-dir", false, "remove the whole state directory, log included, on the way down (a temporary directory)")
				},
				run: func(ctx context.Context, _ *flag.FlagSet, _ io.Writer) error {
					return localcluster.Serve(ctx, localcluster.Options{Dir: dir, Log: os.Stderr}, serve)
				},
			},
		},
	}
}
