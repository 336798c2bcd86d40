package main

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	"k8s.io/client-go/tools/clientcmd"
)

func TestLocalUpStatusEnvDown(t *testing.T) {
	dir := t.TempDir()
	t.Cleanup(func() { cli(t, "local", "down", "--dir", dir) })

	out, errOut, code := cli(t, "local", "up", "--dir", dir)
	assert.Equal(t, code, 0, errOut)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	assert.Check(t, is.Equal(out, "export KUBECONFIG="+kubeconfig+"\n"))
	assert.Check(t, is.Contains(errOut, "local cluster up in"))

	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cfg.CurrentContext, "sandboxtest-local"))
	server, err := url.Parse(cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server)
	assert.NilError(t, err)
	data, err := os.ReadFile(filepath.Join(dir, "serve.pid"))
	assert.NilError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	assert.NilError(t, err)

	// A second up finds the running cluster instead of starting another.
	out, errOut, code = cli(t, "local", "up", "--dir", dir)
	assert.Equal(t, code, 0, errOut)
	assert.Check(t, is.Equal(out, "export KUBECONFIG="+kubeconfig+"\n"))
	assert.Check(t, is.Contains(errOut, "already runs"))

	out, _, code = cli(t, "local", "env", "--dir", dir)
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Equal(out, "export KUBECONFIG="+kubeconfig+"\n"))

	out, _, code = cli(t, "local", "status", "--dir", dir)
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(out, "state:      ready"))
	assert.Check(t, is.Contains(out, "nodes:      1"))

	_, errOut, code = cli(t, "local", "down", "--dir", dir)
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(errOut, "stopped"))
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if syscall.Kill(pid, 0) == nil {
			return poll.Continue("serving process %d still alive", pid)
		}
		if c, err := net.DialTimeout("tcp", server.Host, time.Second); err == nil {
			c.Close()
			return poll.Continue("kube-apiserver %s still listening", server.Host)
		}
		return poll.Success()
	}, poll.WithTimeout(10*time.Second))
	_, err = os.Stat(kubeconfig)
	assert.Check(t, os.IsNotExist(err), "kubeconfig left behind")

	out, errOut, code = cli(t, "local", "status", "--dir", dir)
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(out, "state:      stopped"))
	assert.Check(t, is.Contains(errOut, "sandboxtest-setup local up"))
}

func TestLocalBadInput(t *testing.T) {
	dir := t.TempDir()
	_, errOut, code := cli(t, "local", "env", "--dir", dir)
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(errOut, "no ready local cluster in "+dir))
	assert.Check(t, is.Contains(errOut, "run: sandboxtest-setup local up"))

	_, errOut, code = cli(t, "local", "down", "--dir", dir)
	assert.Check(t, is.Equal(code, 0), "down with nothing running is not an error")
	assert.Check(t, is.Contains(errOut, "no local cluster runs"))

	_, errOut, code = cli(t, "local", "sideways")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(errOut, `unknown command "sideways"`))
	assert.Check(t, is.Contains(errOut, "up "))

	_, errOut, code = cli(t, "local", "up", "--no-such-flag")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(errOut, "flag provided but not defined: -no-such-flag"))
}

func TestHelpListsFlagsWithDefaults(t *testing.T) {
	out, _, code := cli(t, "--help")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(out, "local"))
	_, errOut, code := cli(t, "local", "up", "--help")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(errOut, "-dir"))
	assert.Check(t, is.Contains(errOut, "-timeout"))
	assert.Check(t, is.Contains(errOut, "(default 30m0s)"))
}
