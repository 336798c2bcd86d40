package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
)

// VersionInfo is `version -o json|yaml`.
type VersionInfo struct {
	TypeMeta
	Module       string `json:"module"`  // this module's path
	Version      string `json:"version"` // its version; "(devel)" when built from a checkout
	Kubernetes   string `json:"kubernetes"`
	Etcd         string `json:"etcd"`
	AgentSandbox string `json:"agentSandbox"`
	Go           string `json:"go"`
}

func versionInfo() VersionInfo {
	v := VersionInfo{TypeMeta: typeMeta("VersionInfo"), Module: "github.com/agentsandbox/go-sandboxtest", Version: "(devel)",
		Kubernetes: localcluster.KubernetesVersion, Etcd: localcluster.EtcdVersion, AgentSandbox: localcluster.AgentSandboxVersion}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Go = bi.GoVersion
		if bi.Main.Path == v.Module && bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
	}
	return v
}

func versionCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "version",
		Short: "print this module's version and the pinned Kubernetes, etcd and agent-sandbox versions",
		Args:  noArgs,
	}
	out := newOutputFlag(c.Flags())
	c.RunE = func(c *cobra.Command, _ []string) error {
		v := versionInfo()
		if out.structured() {
			return out.print(c.OutOrStdout(), v)
		}
		fmt.Fprintf(c.OutOrStdout(), "sandboxtest-setup %s (%s, %s)\nkubernetes     %s\netcd           %s\nagent-sandbox  %s\n",
			v.Version, v.Module, v.Go, v.Kubernetes, v.Etcd, v.AgentSandbox)
		return nil
	}
	return c
}

func completionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "print the shell completion script for bash, zsh or fish",
		Long: `completion prints a completion script. Load it with, for example:
  bash:  source <(sandboxtest-setup completion bash)
  zsh:   sandboxtest-setup completion zsh > "${fpath[1]}/_sandboxtest-setup"
  fish:  sandboxtest-setup completion fish | source`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("completion takes one shell: bash, zsh or fish (got %q)", args)
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			w := c.OutOrStdout()
			switch args[0] {
			case "bash":
				return c.Root().GenBashCompletionV2(w, true)
			case "zsh":
				return c.Root().GenZshCompletion(w)
			case "fish":
				return c.Root().GenFishCompletion(w, true)
			}
			return usageErrorf("no completion for shell %q: use bash, zsh or fish", args[0])
		},
	}
}
