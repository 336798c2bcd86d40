package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

func gcCommand() *command {
	var opts kube.GCOptions
	var olderThan time.Duration
	var kubeconfig string
	return &command{
		name:    "gc",
		summary: "delete the SandboxClaims and cold pools that test runs left behind",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&opts.Namespace, "namespace", "default", "namespace to sweep")
			fs.BoolVar(&opts.AllNamespaces, "all-namespaces", false, "sweep every namespace (overrides --namespace)")
			fs.DurationVar(&olderThan, "older-than", kube.DefaultGCAge, "take only objects created at least this long ago; 0 takes any age")
			fs.StringVar(&opts.RunID, "run-id", "", "take only this run's objects (label "+kube.LabelRunID+"); default: every run's")
			fs.BoolVar(&opts.DryRun, "dry-run", false, "print what would be deleted and delete nothing")
			kubeconfigFlag(fs, &kubeconfig)
		},
		run: func(ctx context.Context, fs *flag.FlagSet, out io.Writer) error {
			if fs.NArg() > 0 {
				return fmt.Errorf("gc takes no arguments (got %q); see: sandboxtest-setup gc --help", fs.Args())
			}
			switch {
			case olderThan < 0:
				return fmt.Errorf("--older-than %s is negative; use 0 for any age", olderThan)
			case olderThan == 0:
				opts.OlderThan = kube.AnyAge
			default:
				opts.OlderThan = olderThan
			}
			cfg, _, err := loadKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			if cfg.Timeout == 0 {
				cfg.Timeout = 30 * time.Second // a server that never answers fails gc instead of hanging it
			}
			opts.Log = out
			report, err := kube.GC(ctx, cfg, opts)
			if report != nil {
				fmt.Fprintln(out, report.Summary())
			}
			return err
		},
	}
}
