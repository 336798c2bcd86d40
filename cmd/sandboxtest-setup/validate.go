package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/agentsandbox/go-sandboxtest/fixtures"
	sandboxtest "github.com/agentsandbox/go-sandboxtest/sandboxtest"
)

// validateCommand runs the conformance battery of fixtures.ValidateTemplate
// directly (no go test), with a fixtures.Standalone as the test.
func validateCommand() *command {
	var kubeconfig, namespace, template string
	var budget time.Duration
	var requireNonRoot, verbose bool
	return &command{
		name:    "validate",
		summary: "check that a SandboxTemplate works as a sandbox: Ready, router, commands, files, env, probe, user, network policy",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&template, "template", "", "the SandboxTemplate to validate (required)")
			fs.StringVar(&namespace, "namespace", "default", "namespace of the template, its sandbox and the router")
			kubeconfigFlag(fs, &kubeconfig)
			fs.DurationVar(&budget, "ready-budget", sandboxtest.DefaultReadyTimeout, "how long the sandbox may take to become Ready")
			fs.BoolVar(&requireNonRoot, "require-non-root", false, "fail, rather than warn, when commands run as root")
			fs.BoolVar(&verbose, "v", false, "log progress (claim, connection, each check) to stderr")
		},
		run: func(ctx context.Context, _ *flag.FlagSet, out io.Writer) error {
			if template == "" {
				return errors.New("--template is required: the name of a SandboxTemplate in the cluster (deploy your own with: sandboxtest-setup deploy --templates FILE)")
			}
			cfg, _, err := loadKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			opts := []fixtures.ValidateOption{
				fixtures.WithSandboxOptions(sandboxtest.WithRESTConfig(cfg), sandboxtest.WithNamespace(namespace)),
				fixtures.WithReadyBudget(budget),
			}
			if requireNonRoot {
				opts = append(opts, fixtures.RequireNonRoot())
			}
			var logs io.Writer
			if verbose {
				logs = os.Stderr
			}
			t := fixtures.NewStandalone("validate "+template, logs, os.Stderr)
			defer t.Close() // deletes the sandbox
			rep, err := fixtures.ValidateTemplateE(ctx, t, template, opts...)
			if len(rep.Checks) > 0 {
				rep.WriteTable(out)
			}
			var failed *fixtures.ValidationError
			switch {
			case errors.As(err, &failed):
				return fmt.Errorf("template %s failed %d of %d checks", template, len(rep.Failed()), len(rep.Checks))
			case err != nil:
				return clusterError(err, kubeconfig)
			}
			return nil
		},
	}
}
