package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentsandbox/go-sandboxtest/fixtures"
	sandboxtest "github.com/agentsandbox/go-sandboxtest/sandboxtest"
)

// ValidationReport is `validate -o json|yaml`.
type ValidationReport struct {
	TypeMeta
	Template        string            `json:"template"`
	Namespace       string            `json:"namespace"`
	OK              bool              `json:"ok"` // no check failed
	Checks          []ValidationCheck `json:"checks"`
	DurationSeconds float64           `json:"durationSeconds"`
	Error           string            `json:"error,omitempty"` // why validate could not run the checks
}

// ValidationCheck is one check of the conformance battery.
type ValidationCheck struct {
	Name            string  `json:"name"`
	Status          string  `json:"status"` // PASS, WARN, FAIL or SKIP
	Detail          string  `json:"detail"` // what was seen; for a failure, why and what to change
	DurationSeconds float64 `json:"durationSeconds"`
}

// validateCommand runs the conformance battery of fixtures.ValidateTemplate
// directly (no go test), with a fixtures.Standalone as the test.
func validateCommand() *cobra.Command {
	var template string
	var budget time.Duration
	var requireNonRoot, verbose bool
	c := &cobra.Command{
		Use:   "validate",
		Short: "check that a SandboxTemplate works as a sandbox: Ready, router, commands, files, env, probe, user, network policy",
		Args:  noArgs,
	}
	fs := c.Flags()
	fs.StringVar(&template, "template", "", "the SandboxTemplate to validate (required)")
	kf := newKubeFlags(fs, "namespace of the template, its sandbox and the router")
	out := newOutputFlag(fs)
	fs.DurationVar(&budget, "ready-budget", sandboxtest.DefaultReadyTimeout, "how long the sandbox may take to become Ready")
	fs.BoolVar(&requireNonRoot, "require-non-root", false, "fail, rather than warn, when commands run as root")
	fs.BoolVarP(&verbose, "verbose", "v", false, "log progress (claim, connection, each check) to stderr")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if template == "" {
			return usageErrorf("--template is required: the name of a SandboxTemplate in the cluster (deploy your own with: sandboxtest-setup deploy --templates FILE)")
		}
		cfg, _, err := kf.restConfig()
		if err != nil {
			return err
		}
		namespace := kf.namespace()
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
		rep, err := fixtures.ValidateTemplateE(c.Context(), t, template, opts...)
		w := c.OutOrStdout()
		if out.structured() {
			if perr := out.print(w, validationDocument(template, namespace, rep, err)); perr != nil {
				return perr
			}
		} else if len(rep.Checks) > 0 {
			rep.WriteTable(w)
		}
		var vfailed *fixtures.ValidationError
		switch {
		case errors.As(err, &vfailed):
			return failed(fmt.Errorf("template %s failed %d of %d checks", template, len(rep.Failed()), len(rep.Checks)))
		case err != nil:
			return kf.clusterError(err)
		}
		return nil
	}
	return c
}

func validationDocument(template, namespace string, rep *fixtures.ValidationReport, err error) ValidationReport {
	doc := ValidationReport{TypeMeta: typeMeta("ValidationReport"), Template: template, Namespace: namespace, Checks: []ValidationCheck{}}
	if rep != nil {
		doc.OK = rep.OK() && err == nil
		doc.DurationSeconds = rep.Duration.Seconds()
		for _, c := range rep.Checks {
			doc.Checks = append(doc.Checks, ValidationCheck{Name: c.Name, Status: string(c.Status), Detail: c.Detail, DurationSeconds: c.Duration.Seconds()})
		}
	}
	var vfailed *fixtures.ValidationError
	if err != nil && !errors.As(err, &vfailed) {
		doc.Error = err.Error()
	}
	return doc
}
