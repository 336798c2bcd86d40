// Command sandboxtest-setup prepares clusters for sandboxtest suites. This
// file holds the command table; each command's work lives in a package.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand (or group, when it has subcommands).
type command struct {
	name    string
	summary string
	usage   string // arguments after the name, for help
	flags   func(fs *flag.FlagSet)
	run     func(ctx context.Context, fs *flag.FlagSet, out io.Writer) error
	sub     []*command
	hidden  bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks errors that were already explained with help text.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	root := &command{name: "sandboxtest-setup", summary: "prepare clusters for sandboxtest", sub: commands()}
	if err := dispatch(ctx, root, args, out, errOut); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(errOut, "sandboxtest-setup: %v\n", err)
		}
		return 1
	}
	return 0
}

func commands() []*command {
	return []*command{localCommand(), kindCommand(), gcCommand(), doctorCommand(), deployCommand(), installControllerCommand(), validateCommand()}
}

func dispatch(ctx context.Context, c *command, args []string, out, errOut io.Writer) error {
	if len(c.sub) > 0 {
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			printGroupHelp(c, out)
			if len(args) == 0 {
				return errUsage
			}
			return nil
		}
		for _, s := range c.sub {
			if s.name == args[0] {
				s.name = c.name + " " + s.name
				return dispatch(ctx, s, args[1:], out, errOut)
			}
		}
		printGroupHelp(c, errOut)
		return fmt.Errorf("unknown command %q for %s", args[0], c.name)
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	if c.flags != nil {
		c.flags(fs)
	}
	fs.Usage = func() { printCommandHelp(c, fs, fs.Output()) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // fs.Usage printed the help
		}
		return errUsage
	}
	return c.run(ctx, fs, out)
}

func printGroupHelp(c *command, w io.Writer) {
	fmt.Fprintf(w, "%s: %s\n\nUsage:\n  %s <command> [flags]\n\nCommands:\n", c.name, c.summary, c.name)
	subs := append([]*command{}, c.sub...)
	sort.Slice(subs, func(i, j int) bool { return subs[i].name < subs[j].name })
	width := 0
	for _, s := range subs {
		width = max(width, len(s.name))
	}
	for _, s := range subs {
		if !s.hidden {
			fmt.Fprintf(w, "  %-*s  %s\n", width, s.name, s.summary)
		}
	}
	fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags.\n", c.name)
}

func printCommandHelp(c *command, fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "%s: %s\n\nUsage:\n  %s [flags]%s\n", c.name, c.summary, c.name, c.usage)
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	if b.Len() > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s", b.String())
	}
}
