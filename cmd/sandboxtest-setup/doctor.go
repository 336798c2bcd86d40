package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

func doctorCommand() *command {
	var kubeconfig, namespace, templates, gateway string
	var timeout time.Duration
	return &command{
		name:    "doctor",
		summary: "check what sandboxtest needs from the cluster, one row each, with the command that fixes a failure",
		flags: func(fs *flag.FlagSet) {
			kubeconfigFlag(fs, &kubeconfig)
			fs.StringVar(&namespace, "namespace", "default", "namespace of the router, templates and pools")
			fs.StringVar(&templates, "template", "", "comma-separated templates that must exist with a pool (default: every template in the namespace)")
			fs.StringVar(&gateway, "gateway", "", "[namespace/]name of a Gateway whose address to check")
			fs.DurationVar(&timeout, "timeout", 20*time.Second, "how long the controller check waits for its throwaway claim")
		},
		run: func(ctx context.Context, _ *flag.FlagSet, out io.Writer) error {
			opts := kube.DoctorOptions{Namespace: namespace, Gateway: gateway, Timeout: timeout}
			if templates != "" {
				opts.Templates = strings.Split(templates, ",")
			}
			cfg, contextName, err := loadKubeconfig(kubeconfig)
			var rows []kube.Check
			if err != nil {
				rows = []kube.Check{{Name: "kubeconfig", Seen: err.Error(), Fix: "sandboxtest-setup local up, then export the KUBECONFIG it prints"}}
			} else {
				opts.ContextName = contextName
				rows = kube.Doctor(ctx, cfg, opts)
			}
			failed := printChecks(out, rows)
			if failed > 0 {
				return fmt.Errorf("%d of %d checks failed", failed, len(rows))
			}
			return nil
		},
	}
}

// printChecks prints one row per check and returns how many failed.
func printChecks(w io.Writer, rows []kube.Check) int {
	width := 0
	for _, r := range rows {
		width = max(width, len(r.Name))
	}
	failed := 0
	for _, r := range rows {
		mark := "✓"
		if !r.OK {
			mark = "✗"
			failed++
		}
		fmt.Fprintf(w, "%s %-*s  %s\n", mark, width, r.Name, r.Seen)
		if !r.OK && r.Fix != "" {
			fmt.Fprintf(w, "  %-*s  fix: %s\n", width, "", r.Fix)
		}
	}
	return failed
}
