package localcluster

// kubeMain is the main package of the kubernetes build group: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler as one
// executable, which the cache holds under the four names as hard links.
// Each process runs the command its name says; they share one copy of
// their common code in memory (about 110 MB less resident than three
// Kubernetes executables, and about 5 MB less again with etcd, BENCHMARKS.md
// "Idle memory"). etcd is the version Kubernetes requires, built with
// Kubernetes' versions of its dependencies. It imports for side effects
// what the upstream mains import: the JSON log format and the client-go
// and version metrics.
//
// With SANDBOXTEST_SCHEDULER_ARGS (a JSON array of flags), the
// kube-controller-manager process also runs kube-scheduler, with those
// flags, in a goroutine of its own started by a SIGUSR2 (the control plane
// does so: about 13 MB less resident than a process of its own,
// BENCHMARKS.md "Idle memory").
// Both share klog and its configuration, so the scheduler's lines go to the
// controller manager's log; when the scheduler ends, so does the process.
//
// With SANDBOXTEST_GOGC_ON_SIGUSR1=N a SIGUSR1 sets the process's GC percent
// to N and returns the freed heap to the system: the control plane starts
// kube-apiserver at the default and makes it thrifty once the cluster is up
// (see apiServerIdleGOGC).
const kubeMain = `// Command kubernetes is etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler in one executable (written by sandboxtest).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	var cmd *cobra.Command
	switch name := filepath.Base(os.Args[0]); name {
	case "etcd":
		etcdmain.Main(os.Args)
		return
	case "kube-apiserver":
		cmd = apiserver.NewAPIServerCommand()
	case "kube-controller-manager":
		cmd = controllermanager.NewControllerManagerCommand()
		schedulerAlongside()
	case "kube-scheduler":
		cmd = scheduler.NewSchedulerCommand()
	default:
		fmt.Fprintf(os.Stderr, "%s: run this program as etcd, kube-apiserver, kube-controller-manager or kube-scheduler (a link by that name)\n", name)
		os.Exit(2)
	}
	gcPercentOnSignal()
	os.Exit(cli.Run(cmd))
}

// schedulerAlongside: with SANDBOXTEST_SCHEDULER_ARGS set, kube-scheduler
// runs in this process too, from the first SIGUSR2 on. Each command sets up
// the process's logging and feature gates without a lock, so the scheduler
// starts once the controller manager has done so: the control plane signals
// when the default ServiceAccount exists. Started together, they raced, and
// a CI run's controller manager died of a nil logger.
func schedulerAlongside() {
	v := os.Getenv("SANDBOXTEST_SCHEDULER_ARGS")
	if v == "" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(v), &args); err != nil {
		fmt.Fprintf(os.Stderr, "SANDBOXTEST_SCHEDULER_ARGS: want a JSON array of strings: %v\n", err)
		os.Exit(2)
	}
	// Both commands apply the same logging configuration; the second
	// application would otherwise be refused.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
	sched := scheduler.NewSchedulerCommand()
	sched.SetArgs(args)
	start := make(chan os.Signal, 1)
	signal.Notify(start, syscall.SIGUSR2)
	go func() {
		<-start
		if err := sched.Execute(); err != nil {
			fmt.Fprintf(os.Stderr, "kube-scheduler (in this process): %v\n", err)
			os.Exit(1)
		}
		os.Exit(0) // it ends on SIGTERM or SIGINT, which it took over
	}()
}

// gcPercentOnSignal: with SANDBOXTEST_GOGC_ON_SIGUSR1=N, a SIGUSR1 sets the
// GC percent to N and returns the freed heap to the system.
func gcPercentOnSignal() {
	v := os.Getenv("SANDBOXTEST_GOGC_ON_SIGUSR1")
	if v == "" {
		return
	}
	percent, err := strconv.Atoi(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "SANDBOXTEST_GOGC_ON_SIGUSR1=%s: want a number\n", v)
		os.Exit(2)
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	go func() {
		for range c {
			debug.SetGCPercent(percent)
			debug.FreeOSMemory()
		}
	}()
}
`
