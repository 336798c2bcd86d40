package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// DoctorReport is `doctor -o json|yaml`.
type DoctorReport struct {
	TypeMeta
	Context   string        `json:"context,omitempty"` // the kubeconfig context checked
	Namespace string        `json:"namespace"`
	OK        bool          `json:"ok"` // every check passed
	Checks    []DoctorCheck `json:"checks"`
}

// DoctorCheck is one row of doctor.
type DoctorCheck struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	Seen string `json:"seen"`          // what was found
	Fix  string `json:"fix,omitempty"` // the command that fixes a failed check
}

func doctorCommand() *cobra.Command {
	var templates []string
	var gateway string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "doctor",
		Short: "check what sandboxtest needs from the cluster, one row each, with the command that fixes a failure",
		Long: `doctor checks what sandboxtest needs from the cluster, one row each, with the
command that fixes a failure. It exits 1 when a check fails, 3 when the
cluster cannot be reached.`,
		Args: noArgs,
	}
	fs := c.Flags()
	kf := newKubeFlags(fs, "namespace of the router, templates and pools")
	out := newOutputFlag(fs)
	fs.StringSliceVar(&templates, "template", nil, "comma-separated templates that must exist with a pool (default: every template in the namespace)")
	fs.StringVar(&gateway, "gateway", "", "[namespace/]name of a Gateway whose address to check")
	fs.DurationVar(&timeout, "timeout", 20*time.Second, "how long the controller check waits for its throwaway claim")
	c.RunE = func(c *cobra.Command, _ []string) error {
		rep := DoctorReport{TypeMeta: typeMeta("DoctorReport"), Namespace: kf.namespace()}
		cfg, contextName, err := kf.restConfig()
		var rows []kube.Check
		if exitCode(err) == exitUsage { // a --context the kubeconfig lacks
			return err
		}
		if err != nil {
			rows = []kube.Check{{Name: "kubeconfig", Seen: err.Error(), Fix: "sandboxtest-setup local up, then export the KUBECONFIG it prints"}}
		} else {
			rep.Context = contextName
			rows = kube.Doctor(c.Context(), cfg, kube.DoctorOptions{
				Namespace: rep.Namespace, Gateway: gateway, Timeout: timeout, Templates: templates, ContextName: contextName})
		}
		nfailed := 0
		for _, r := range rows {
			rep.Checks = append(rep.Checks, DoctorCheck(r))
			if !r.OK {
				nfailed++
			}
		}
		rep.OK = nfailed == 0
		if out.structured() {
			if err := out.print(c.OutOrStdout(), rep); err != nil {
				return err
			}
		} else {
			printChecks(c.OutOrStdout(), rows)
		}
		switch {
		case nfailed == 0:
			return nil
		case len(rows) > 0 && !rows[0].OK && (rows[0].Name == "kubeconfig" || rows[0].Name == "API reachable"):
			return unreachable(fmt.Errorf("%d of %d checks failed: the cluster cannot be reached", nfailed, len(rows)))
		}
		return failed(fmt.Errorf("%d of %d checks failed", nfailed, len(rows)))
	}
	return c
}

// printChecks prints one row per check: ✓/✗ on a terminal, ok/FAIL when piped.
func printChecks(w io.Writer, rows []kube.Check) {
	pass, fail := marks(w)
	width := 0
	for _, r := range rows {
		width = max(width, len(r.Name))
	}
	for _, r := range rows {
		mark := pass
		if !r.OK {
			mark = fail
		}
		fmt.Fprintf(w, "%s %-*s  %s\n", mark, width, r.Name, r.Seen)
		if !r.OK && r.Fix != "" {
			fmt.Fprintf(w, "%*s  %-*s  fix: %s\n", len([]rune(mark)), "", width, "", r.Fix)
		}
	}
}
