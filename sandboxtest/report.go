package sandboxtest

import (
	"context"
	"os"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/report"
	"github.com/agentsandbox/go-sandboxtest/internal/summary"
)

// The failure report: when a test that used a sandbox has failed, the
// sandbox's cleanup logs, before deleting anything, a bounded report of
// what the cluster and the sandbox did, and writes the full material to
// $SANDBOXTEST_ARTIFACTS/<TestName>/<claim>/ when that is set. Here the
// sandbox collects the data; internal/report renders and writes it.

const (
	reportBudget      = 30 * time.Second     // all gathering, each call bounded by kube.DefaultCallTimeout
	reportDisabledEnv = "SANDBOXTEST_REPORT" // false (0) turns the report off
)

// record remembers a call for the report and, for a command, counts it
// in the summary.
func (sb *Sandbox) record(op report.Op) {
	sb.trail.Call(op)
	if op.Op == "run" && op.Err == "" {
		sb.sum.Update(func(s *summary.Sandbox) {
			s.Commands++
			s.CommandTimeMS += ms(op.Duration)
		})
	}
}

// failureReport gathers and logs the report, and writes the artifacts.
func (sb *Sandbox) failureReport() {
	if !envSwitch(reportDisabledEnv, true) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), reportBudget)
	defer cancel()
	d := sb.c.clients.Gather(ctx, kube.DiagnosticsRequest{
		Namespace: sb.s.namespace, Claim: sb.claim, Sandbox: sb.ready.SandboxName, Pod: sb.ready.PodName,
		RouterNamespace: sb.s.routerNS(),
	})
	sb.t.Logf("%s", report.Write(os.Getenv(report.ArtifactsEnv), sb.reportData(d)))
}

func (sb *Sandbox) reportData(d *kube.Diagnostics) report.Data {
	rd := report.Data{
		Test: sb.t.Name(), Template: sb.template, Pool: sb.pool.Name,
		Namespace: sb.s.namespace, Claim: sb.claim, Sandbox: sb.ready.SandboxName, Pod: sb.ready.PodName,
		PodIP: sb.ready.PodIP, Node: sb.ready.NodeName, RunID: RunID(), TraceID: sb.traceID(),
		Created: sb.created, Diag: d, Observed: sb.trail.Observed(), Ops: sb.trail.Ops(),
	}
	for _, r := range sb.History() {
		rd.History = append(rd.History, report.Command{Cmd: r.Cmd, Stdout: r.Stdout, Stderr: r.Stderr, ExitCode: r.ExitCode, Duration: r.Duration})
	}
	if sb.ready.PodName != "" {
		rd.Start = "cold"
		if sb.ready.Warm {
			rd.Start = "warm"
		}
	}
	if sb.c != nil {
		rd.Mode = string(sb.c.choice.Mode)
		if sb.c.conn != nil {
			rd.Route = sb.c.conn.Describe()
		}
	}
	if d != nil {
		if rd.Sandbox == "" && d.Sandbox != nil {
			rd.Sandbox = d.Sandbox.Name
		}
		if p := d.Pod; p != nil {
			if rd.Pod == "" {
				rd.Pod = p.Name
			}
			if rd.PodIP == "" {
				rd.PodIP = p.Status.PodIP
			}
			if rd.Node == "" {
				rd.Node = p.Spec.NodeName
			}
		}
	}
	return rd
}
