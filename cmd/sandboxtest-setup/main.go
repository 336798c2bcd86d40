// Command sandboxtest-setup prepares clusters for sandboxtest suites. This
// file holds the command tree and the exit codes; each command's work lives
// in a package.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	sandboxtest "github.com/agentsandbox/go-sandboxtest/sandboxtest"
)

// Exit codes, documented in --help and the README.
const (
	exitOK          = 0 // success
	exitFailed      = 1 // a check or validation failed, or the work did
	exitUsage       = 2 // a usage error: unknown command or flag, stray argument, bad value
	exitUnreachable = 3 // the cluster or a dependency could not be reached
)

const exitCodesHelp = `Exit codes:
  0  success
  1  a check or validation failed (or the work itself did)
  2  usage error: unknown command or flag, a stray argument, a bad value
  3  the cluster or a dependency (kubeconfig, container runtime) could not be reached
`

// exitError carries the exit code an error maps to.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, args...)}
}

// failed marks err as a failed check (exit 1) that was already shown.
func failed(err error) error { return &exitError{exitFailed, err} }

func unreachable(err error) error { return &exitError{exitUnreachable, err} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit code.
func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(errOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(errOut, "sandboxtest-setup: %v\n", err)
	return exitCode(err)
}

// exitCode maps an error to its exit code: what the commands marked, and
// unreachable clusters from the packages wherever they come from.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ku *kube.UnreachableError
	var su *sandboxtest.UnavailableError
	if errors.As(err, &ku) || errors.As(err, &su) {
		return exitUnreachable
	}
	return exitFailed
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "sandboxtest-setup",
		Short: "prepare clusters for sandboxtest",
		Long: `sandboxtest-setup prepares clusters for sandboxtest suites: a local cluster
without Docker, a Kind cluster, or any cluster in your kubeconfig.`,
		SilenceErrors: true, // run prints them, once, with the exit code's meaning
		SilenceUsage:  true, // an error is one line, not the whole help
		Args:          subcommandArgs,
		RunE:          groupRun,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErrorf("%v; see: %s --help", err, c.CommandPath())
	})
	root.SetUsageTemplate(root.UsageTemplate() + "\n" + exitCodesHelp)
	root.CompletionOptions.DisableDefaultCmd = true // ours offers bash, zsh and fish
	root.AddCommand(localCommand(), kindCommand(), gcCommand(), doctorCommand(), deployCommand(),
		installControllerCommand(), validateCommand(), versionCommand(), completionCommand())
	return root
}

// groupRun runs a command that only holds others: bare, it prints its help.
func groupRun(c *cobra.Command, _ []string) error { return c.Help() }

// subcommandArgs rejects an argument that names no subcommand.
func subcommandArgs(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's default, set only where it suggests itself
	}
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		return usageErrorf("unknown command %q for %q; did you mean %q?", args[0], c.CommandPath(), s[0])
	}
	return usageErrorf("unknown command %q for %q (commands: %s); see: %s --help", args[0], c.CommandPath(), strings.Join(names, ", "), c.CommandPath())
}

// noArgs rejects positional arguments, which no leaf command takes. A
// duration after --wait is the old --wait DURATION: say what replaced it.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	name := strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
	if f := c.Flags().Lookup("wait"); f != nil && f.Changed && f.Value.Type() == "bool" {
		if d, err := time.ParseDuration(args[0]); err == nil {
			fix := "--wait=false"
			if d > 0 {
				fix = "--timeout " + args[0]
			}
			return usageErrorf("%s takes no arguments (got %q): --wait is a boolean, as in kubectl, with --timeout beside it; use %s", name, args, fix)
		}
	}
	return usageErrorf("%s takes no arguments (got %q); see: %s --help", name, args, c.CommandPath())
}

// explicit reports whether the flag name was given on the command line.
func explicit(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}
