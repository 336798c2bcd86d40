package sandboxtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	templates "github.com/agentsandbox/go-sandboxtest"
	"github.com/agentsandbox/go-sandboxtest/connect"
	"github.com/agentsandbox/go-sandboxtest/internal/deploy"
	"github.com/agentsandbox/go-sandboxtest/internal/envflag"
	"github.com/agentsandbox/go-sandboxtest/tracing"
)

// MainOption configures Main.
type MainOption func(*mainSettings)

type mainSettings struct{ local *bool }

// UseLocalCluster makes Main run the suite against a local cluster whatever
// the kubeconfig says (like SANDBOXTEST_LOCAL=1); false never starts one.
func UseLocalCluster(use bool) MainOption { return func(s *mainSettings) { s.local = &use } }

// Main runs a package's tests (call it from TestMain) with a cluster ready:
// when SANDBOXTEST_LOCAL=1, or when no kubeconfig is configured and CI is not
// set, it reuses the local cluster that `sandboxtest-setup local up` runs or
// starts one of its own, and deploys the router and the embedded templates
// there. It stops what it started, then exits with the tests' status.
//
// With SANDBOXTEST_TRACING=1 or -sandboxtest.trace it exports spans per the
// OTEL_* variables (see package tracing) and flushes them at the end; with
// SANDBOXTEST_SUMMARY=path it adds the run summary to path (a JSON
// file; its fields are in the README).
func Main(m *testing.M, opts ...MainOption) {
	os.Exit(runMain(m, opts))
}

func runMain(m *testing.M, opts []MainOption) int {
	var s mainSettings
	for _, o := range opts {
		o(&s)
	}
	if !flag.Parsed() {
		flag.Parse() // for -sandboxtest.trace and -sandboxtest.quiet; m.Run does not parse again
	}
	if tracingWanted() {
		shutdown, err := tracing.Setup(context.Background())
		if err != nil {
			fmt.Fprintf(os.Stderr, "sandboxtest: tracing was asked for (SANDBOXTEST_TRACING or -sandboxtest.trace) but cannot start: %v\n", err)
			return 1
		}
		defer func() { // after the cleanups below: the last spans end in them
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := shutdown(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "%v\n", err)
			}
		}()
	}
	defer func() {
		if err := writeRunSummary(); err != nil {
			fmt.Fprintf(os.Stderr, "%v\n", err)
		}
	}()
	defer connect.CloseShared()
	if wantLocal(s) {
		stop, err := prepareLocal()
		if err != nil {
			fmt.Fprintf(os.Stderr, "sandboxtest: preparing the local cluster: %v\n", err)
			return 1
		}
		defer stop()
	}
	code := m.Run()
	deleteDetached() // idle shared sandboxes; before the cluster stops
	return code
}

// tracingWanted: -sandboxtest.trace or SANDBOXTEST_TRACING=1.
func tracingWanted() bool {
	if *flagTrace {
		return true
	}
	return envSwitch("SANDBOXTEST_TRACING", false)
}

func wantLocal(s mainSettings) bool {
	if s.local != nil {
		return *s.local
	}
	if v, err := envflag.Bool("SANDBOXTEST_LOCAL", false); err == nil && strings.TrimSpace(os.Getenv("SANDBOXTEST_LOCAL")) != "" {
		return v
	}
	return !kubeconfigConfigured() && !connect.InCI()
}

func kubeconfigConfigured() bool {
	if os.Getenv("KUBECONFIG") != "" {
		return true
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(home, ".kube", "config"))
	return err == nil
}

// prepareLocal points KUBECONFIG at a ready local cluster with the router
// and templates deployed, and returns what undoes it. Where the local
// cluster cannot run (off Linux), it says so and leaves KUBECONFIG alone.
//
// The deploy stays here rather than in the serving process: it is light
// (client-go only), it deploys the templates embedded in the version of this
// module the tests were built with into SANDBOXTEST_NAMESPACE as the tests
// see it, and a cluster from `sandboxtest-setup local up` needs it too.
func prepareLocal() (stop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a first build takes minutes
	defer cancel()
	kubeconfig, stop, err := startLocal(ctx)
	if err != nil || kubeconfig == "" {
		return stop, err
	}
	if err := os.Setenv("KUBECONFIG", kubeconfig); err != nil {
		stop()
		return nil, err
	}
	cfg, _, err := loadRestConfig()
	if err != nil {
		stop()
		return nil, err
	}
	rep, err := deploy.Deploy(ctx, cfg, deploy.Options{Namespace: defaultNamespace(true), RouterNamespace: os.Getenv(connect.EnvRouterNamespace), Templates: templates.FS})
	if err != nil {
		stop()
		return nil, errors.Join(errors.New("deploying the router and templates"), err)
	}
	stderrProgressf("sandboxtest: router and %d templates deployed in %s", len(rep.Templates), rep.Duration.Round(100*time.Millisecond))
	return stop, nil
}
