package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// GCReport is `gc -o json|yaml`.
type GCReport struct {
	TypeMeta
	Namespace     string `json:"namespace,omitempty"` // empty with allNamespaces
	AllNamespaces bool   `json:"allNamespaces"`
	RunID         string `json:"runID,omitempty"`
	// OlderThanSeconds is the age threshold; 0 took any age.
	OlderThanSeconds float64 `json:"olderThanSeconds"`
	DryRun           bool    `json:"dryRun"`
	// Deleted is what was deleted (in a dry run: would be), claims first.
	Deleted []GCObject `json:"deleted"`
	// Kept counts what matched but stayed.
	Kept struct {
		YoungerClaims int `json:"youngerClaims"`
		YoungerPools  int `json:"youngerPools"`
		PoolsInUse    int `json:"poolsInUse"`
	} `json:"kept"`
	Failed  int    `json:"failed"` // deletions that failed; error says why
	Summary string `json:"summary"`
	Error   string `json:"error,omitempty"`
}

// GCObject is one claim or cold pool gc took.
type GCObject struct {
	Kind       string  `json:"kind"` // "claim" or "cold pool"
	Namespace  string  `json:"namespace"`
	Name       string  `json:"name"`
	RunID      string  `json:"runID,omitempty"`
	Test       string  `json:"test,omitempty"`
	AgeSeconds float64 `json:"ageSeconds"`
}

func gcCommand() *cobra.Command {
	var opts kube.GCOptions
	var olderThan time.Duration
	c := &cobra.Command{
		Use:   "gc",
		Short: "delete the SandboxClaims and cold pools that test runs left behind",
		Args:  noArgs,
	}
	fs := c.Flags()
	kf := newKubeFlags(fs, "namespace to sweep")
	out := newOutputFlag(fs)
	fs.BoolVarP(&opts.AllNamespaces, "all-namespaces", "A", false, "sweep every namespace (overrides --namespace)")
	fs.DurationVar(&olderThan, "older-than", kube.DefaultGCAge, "take only objects created at least this long ago; 0 takes any age")
	fs.StringVar(&opts.RunID, "run-id", "", "take only this run's objects (label "+kube.LabelRunID+"); default: every run's")
	fs.BoolVar(&opts.DryRun, "dry-run", false, "print what would be deleted and delete nothing")
	c.RunE = func(c *cobra.Command, _ []string) error {
		switch {
		case olderThan < 0:
			return usageErrorf("--older-than %s is negative; use 0 for any age", olderThan)
		case olderThan == 0:
			opts.OlderThan = kube.AnyAge
		default:
			opts.OlderThan = olderThan
		}
		cfg, _, err := kf.restConfig()
		if err != nil {
			return err
		}
		if cfg.Timeout == 0 {
			cfg.Timeout = 30 * time.Second // a server that never answers fails gc instead of hanging it
		}
		if !opts.AllNamespaces {
			opts.Namespace = kf.namespace()
		}
		w := c.OutOrStdout()
		opts.Log = w
		if out.structured() {
			opts.Log = os.Stderr // the document alone on stdout
		}
		report, err := kube.GC(c.Context(), cfg, opts)
		if report != nil {
			if out.structured() {
				if perr := out.print(w, gcDocument(opts, report, err)); perr != nil {
					return perr
				}
			} else {
				fmt.Fprintln(w, report.Summary())
			}
		}
		if err != nil {
			return kf.clusterError(err)
		}
		return nil
	}
	return c
}

func gcDocument(opts kube.GCOptions, r *kube.GCReport, err error) GCReport {
	doc := GCReport{TypeMeta: typeMeta("GCReport"), AllNamespaces: opts.AllNamespaces, RunID: opts.RunID,
		DryRun: r.DryRun, Deleted: []GCObject{}, Failed: r.Failed, Summary: r.Summary()}
	if !opts.AllNamespaces {
		doc.Namespace = opts.Namespace
	}
	if r.OlderThan > 0 {
		doc.OlderThanSeconds = r.OlderThan.Seconds()
	}
	for _, o := range append(append([]kube.GCObject{}, r.Claims...), r.Pools...) {
		doc.Deleted = append(doc.Deleted, GCObject{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, RunID: o.RunID, Test: o.Test, AgeSeconds: o.Age.Seconds()})
	}
	doc.Kept.YoungerClaims, doc.Kept.YoungerPools, doc.Kept.PoolsInUse = r.YoungerClaims, r.YoungerPools, r.PoolsInUse
	if err != nil {
		doc.Error = err.Error()
	}
	return doc
}
