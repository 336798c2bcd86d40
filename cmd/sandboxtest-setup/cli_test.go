package main

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/icmd"
	"sigs.k8s.io/yaml"

	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
)

func yamlUnmarshal(s string, v any) error { return yaml.UnmarshalStrict([]byte(s), v) }

// TestExitCodes: one command line for each documented exit code.
func TestExitCodes(t *testing.T) {
	kc, _ := closedPortKubeconfig(t)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"version"}, exitOK},
		{[]string{"local", "status", "--dir", t.TempDir()}, exitFailed},
		{[]string{"version", "extra"}, exitUsage},
		{[]string{"no-such-command"}, exitUsage},
		{[]string{"gc", "--no-such-flag"}, exitUsage},
		{[]string{"gc", "--kubeconfig", kc}, exitUnreachable},
	} {
		res := sandboxtestSetup(nil, tc.args...)
		assert.Check(t, is.Equal(res.ExitCode, tc.want), "%v:\n%s", tc.args, res.Combined())
	}
	// --help documents them, on every command.
	for _, args := range [][]string{{"--help"}, {"gc", "--help"}, {"local", "status", "--help"}} {
		res := sandboxtestSetup(nil, args...)
		res.Assert(t, icmd.Expected{Out: exitCodesHelp})
	}
}

func TestVersion(t *testing.T) {
	res := sandboxtestSetup(nil, "version")
	res.Assert(t, icmd.Expected{Out: "kubernetes     " + localcluster.KubernetesVersion})
	assert.Check(t, is.Contains(res.Stdout(), "etcd           "+localcluster.EtcdVersion))
	assert.Check(t, is.Contains(res.Stdout(), "agent-sandbox  "+localcluster.AgentSandboxVersion))

	res = sandboxtestSetup(nil, "version", "-o", "json")
	res.Assert(t, icmd.Success)
	var v VersionInfo
	assert.NilError(t, json.Unmarshal([]byte(res.Stdout()), &v))
	assert.Check(t, is.DeepEqual(v, VersionInfo{TypeMeta: typeMeta("VersionInfo"), Module: "github.com/agentsandbox/go-sandboxtest", Version: v.Version,
		Kubernetes: localcluster.KubernetesVersion, Etcd: localcluster.EtcdVersion, AgentSandbox: localcluster.AgentSandboxVersion, Go: v.Go}))
	assert.Check(t, v.Version != "" && strings.HasPrefix(v.Go, "go"), "%+v", v)
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "__start_sandboxtest-setup",
		"zsh":  "#compdef sandboxtest-setup",
		"fish": "complete -c sandboxtest-setup",
	} {
		sandboxtestSetup(nil, "completion", shell).Assert(t, icmd.Expected{Out: want})
	}
	sandboxtestSetup(nil, "completion", "powershell").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: "use bash, zsh or fish"})
	sandboxtestSetup(nil, "completion").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: "completion takes one shell"})
	// Completion of flag names and commands comes from the registered ones.
	res := sandboxtestSetup(nil, "__complete", "gc", "--all")
	res.Assert(t, icmd.Expected{Out: "--all-namespaces"})
	res = sandboxtestSetup(nil, "__complete", "local", "st")
	res.Assert(t, icmd.Expected{Out: "status"})
}

// TestREADMEFlags: the README and the registered flags agree. Each command
// has a bullet in the README's sandboxtest-setup section whose first
// parentheses list exactly its flags, and every sandboxtest-setup (or
// $SETUP) command line anywhere in the README names registered flags only.
func TestREADMEFlags(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	assert.NilError(t, err)
	readme := string(data)
	root := newRootCommand()

	start := strings.Index(readme, "\n## sandboxtest-setup\n")
	assert.Assert(t, start >= 0, "README has no sandboxtest-setup section")
	section := readme[start+1:]
	section = section[:strings.Index(section, "\n## ")]
	// "**local up** (`--dir`, `--timeout`)": a command and its flag list.
	bullet := regexp.MustCompile("\\*\\*([a-z -]+)\\*\\*\\s+\\(([^)]*)\\)")
	flagName := regexp.MustCompile("`(?:-[a-zA-Z]/)?--([a-z][a-z0-9-]*)")
	documented := map[string][]string{}
	for _, m := range bullet.FindAllStringSubmatch(section, -1) {
		var flags []string
		for _, f := range flagName.FindAllStringSubmatch(strings.Join(strings.Fields(m[2]), " "), -1) {
			flags = append(flags, f[1])
		}
		sort.Strings(flags)
		documented[m[1]] = flags
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, s := range c.Commands() {
			if !s.IsAvailableCommand() {
				continue
			}
			if s.HasSubCommands() {
				walk(s)
				continue
			}
			path := strings.TrimPrefix(s.CommandPath(), "sandboxtest-setup ")
			var registered []string
			s.Flags().VisitAll(func(f *pflag.Flag) {
				if f.Name != "help" {
					registered = append(registered, f.Name)
				}
			})
			sort.Strings(registered)
			flags, ok := documented[path]
			if !assert.Check(t, ok, "README documents no flags of %q: add a bullet **%s** (…) to its sandboxtest-setup section", path, path) {
				continue
			}
			assert.Check(t, is.DeepEqual(flags, registered), "README bullet **%s** vs. its registered flags", path)
			delete(documented, path)
		}
	}
	walk(root)
	assert.Check(t, is.Len(documented, 0), "README bullets for no command: %v", documented)

	// Command lines: `sandboxtest-setup deploy --gateway NAME`, `$SETUP gc -A`.
	line := regexp.MustCompile(`(?:sandboxtest-setup|\$SETUP)((?: [a-z][a-z-]*)+)([^` + "`" + `#|;)\n]*)`)
	token := regexp.MustCompile(`(?:^|\s|\[)(--?[a-zA-Z][a-zA-Z0-9-]*)`)
	checked := 0
	for _, m := range line.FindAllStringSubmatch(readme, -1) {
		words := strings.Fields(m[1])
		c, rest, err := root.Find(words)
		if err != nil || c == root {
			continue // prose: "sandboxtest-setup deploys …"
		}
		args := strings.Join(rest, " ") + m[2]
		for _, f := range token.FindAllStringSubmatch(args, -1) {
			name := f[1]
			var found *pflag.Flag
			if strings.HasPrefix(name, "--") {
				found = c.Flags().Lookup(strings.TrimPrefix(name, "--"))
			} else if len(name) == 2 {
				found = c.Flags().ShorthandLookup(name[1:])
			}
			assert.Check(t, found != nil, "README line %q: %s has no flag %s", strings.TrimSpace(m[0]), c.CommandPath(), name)
			checked++
		}
	}
	assert.Check(t, checked > 10, "only %d flags checked in README command lines: is the pattern still right?", checked)
}

// TestHelpFlagsDocumented: every flag has a usage text (what --help prints).
func TestHelpFlagsDocumented(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			assert.Check(t, strings.TrimSpace(f.Usage) != "", "%s --%s has no usage text", c.CommandPath(), f.Name)
		})
		assert.Check(t, c.Short != "", "%s has no summary", c.CommandPath())
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRootCommand())
}
