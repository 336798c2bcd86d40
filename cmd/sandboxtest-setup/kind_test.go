package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/agentsandbox/go-sandboxtest/internal/kindcluster"
)

func TestKindHelpListsFlagsWithDefaults(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{
			args: []string{"kind", "create", "--help"},
			want: []string{
				"--name string", `(default "sandboxtest")`,
				"--image string", `(default "` + kindcluster.DefaultNodeImage + `")`,
				"--kubernetes-version string", "kindest/node:<version>",
				"--kubeconfig string", `(default "`,
				"--wait ", "(default true)",
				"--timeout duration", "(default 1m0s)",
				"--deploy", "install-controller", "deploy",
			},
		},
		{
			args: []string{"kind", "delete", "--help"},
			want: []string{"--name string", `(default "sandboxtest")`, "--kubeconfig string", `(default "`},
		},
		{
			args: []string{"--help"},
			want: []string{"kind ", "local "},
		},
	} {
		code, stdout, stderr := runCLI(t, tc.args...)
		help := stdout + stderr
		if code != 0 {
			t.Errorf("%v: exit %d\n%s", tc.args, code, help)
		}
		for _, w := range tc.want {
			if !strings.Contains(help, w) {
				t.Errorf("%v: help lacks %q:\n%s", tc.args, w, help)
			}
		}
	}
}

// withDockerClientOnly isolates PATH, HOME and KUBECONFIG, with a docker
// client on PATH that no engine answers (as on machines with the CLI but no
// daemon), and returns an explicit kubeconfig path that must stay unwritten.
func withDockerClientOnly(t *testing.T) (home, kubeconfig string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the fake docker client is a shell script")
	}
	bin := t.TempDir()
	script := `#!/bin/sh
case "$1" in
-v|--version) echo "Docker version 28.2.2, build e6534b4" ;;
*) echo; echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	home = t.TempDir()
	t.Setenv("PATH", bin)
	t.Setenv("HOME", home)
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KIND_EXPERIMENTAL_PROVIDER", "")
	return home, filepath.Join(t.TempDir(), "kubeconfig")
}

func TestKindWithoutRuntime(t *testing.T) {
	home, kubeconfig := withDockerClientOnly(t)
	for _, args := range [][]string{
		{"kind", "create", "--kubeconfig", kubeconfig},
		{"kind", "create"},
		{"kind", "create", "--kubernetes-version", "v1.33.1", "--wait=false"}, // the --image default does not conflict
		{"kind", "create", "--deploy"},                                        // nothing is installed without a cluster
		{"kind", "delete", "--name", "other", "--kubeconfig", kubeconfig},
	} {
		code, stdout, stderr := runCLI(t, args...)
		if code != exitUnreachable {
			t.Errorf("%v: exit %d, want %d (a dependency could not be reached)", args, code, exitUnreachable)
		}
		for _, want := range []string{
			"sandboxtest-setup: kind needs a container runtime (docker, podman or nerdctl) and none answers",
			"is installed, but no engine answers it",
			"Cannot connect to the Docker daemon",
			"podman: not found on PATH",
			"nerdctl: not found on PATH",
			"https://docs.docker.com/engine/install/",
			"sandboxtest-setup local up",
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%v: stderr lacks %q:\n%s", args, want, stderr)
			}
		}
		if stdout != "" {
			t.Errorf("%v: stdout = %q, want nothing", args, stdout)
		}
	}
	// The same as a process: the exit status is non-zero (cli is in main_test.go).
	stdout, stderr, code := cli(t, "kind", "create", "--kubeconfig", kubeconfig)
	if code != exitUnreachable || stdout != "" || !strings.Contains(stderr, "no engine answers it") || !strings.Contains(stderr, "sandboxtest-setup local up") {
		t.Errorf("sandboxtest-setup kind create: exit %d, stdout %q, stderr:\n%s\nwant non-zero and the no-runtime error", code, stdout, stderr)
	}
	for _, p := range []string{kubeconfig, filepath.Join(home, ".kube")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
}

func TestKindCreateRejectsImageAndVersion(t *testing.T) {
	withDockerClientOnly(t)
	code, _, stderr := runCLI(t, "kind", "create", "--image", "example.com/node:mine", "--kubernetes-version", "v1.33.1")
	if code != exitUsage || !strings.Contains(stderr, "set one of them") {
		t.Errorf("exit %d, stderr:\n%s\nwant non-zero and the both-set error", code, stderr)
	}
}
