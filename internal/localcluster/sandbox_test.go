package localcluster_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	asclient "sigs.k8s.io/agent-sandbox/clients/k8s/clientset/versioned"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"

	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
	"github.com/agentsandbox/go-sandboxtest/internal/proc"
	"github.com/agentsandbox/go-sandboxtest/internal/processnode"
	"github.com/agentsandbox/go-sandboxtest/internal/setupbin"
)

// unprivilegedEnv marks the copy of this test binary that runs as uid 65534.
const unprivilegedEnv = "SANDBOXTEST_TEST_UNPRIVILEGED"

// TestSandboxIsolation checks, from inside a sandbox through the runtime
// API, what the code under test can and cannot reach.
func TestSandboxIsolation(t *testing.T) {
	ctx := context.Background()
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: t.TempDir(), Log: testWriter{t}}, nil)
	assert.NilError(t, err)
	t.Cleanup(func() { c.Stop() })
	e := &env{c: c,
		cs:  kubernetes.NewForConfigOrDie(c.RESTConfig),
		as:  asclient.NewForConfigOrDie(c.RESTConfig),
		ext: extclient.NewForConfigOrDie(c.RESTConfig),
	}
	e.createTemplate(t, "python-sandbox-template", runtimeImage)

	home, err := os.UserHomeDir()
	assert.NilError(t, err)
	canary := filepath.Join(home, ".sandboxtest-canary")
	assert.NilError(t, os.WriteFile(canary, []byte("developer secret\n"), 0o644))
	t.Cleanup(func() { os.Remove(canary) })
	t.Setenv("SANDBOXTEST_TEST_LEAK", "from the developer's environment")

	claim := e.claim(t, "python-sandbox-template")
	pod := e.readyPod(t, claim)
	url := fmt.Sprintf("http://127.0.0.1:%d", e.portForward(t, pod.Name, 8888))
	run := func(cmd string) execResult { t.Helper(); return execute(t, url+"/execute", nil, cmd) }

	t.Run("the developer's files are out of reach", func(t *testing.T) {
		out := run("cat " + canary)
		assert.Check(t, out.ExitCode != 0, "read %s from the sandbox: %q", canary, out.Stdout)
		assert.Check(t, !strings.Contains(out.Stdout, "developer secret"))
		for _, p := range []string{home, "/root", "/home", "/work", c.Dir} {
			out := run("ls " + p)
			assert.Check(t, out.ExitCode != 0, "%s is visible in the sandbox: %q", p, out.Stdout)
		}
	})
	t.Run("writing outside the writable paths fails", func(t *testing.T) {
		for _, p := range []string{"/usr/x", "/etc/x", "/x", "/bin/x"} {
			out := run("sh -c 'echo x > " + p + "'")
			assert.Check(t, out.ExitCode != 0, "wrote %s", p)
		}
		out := run("sh -c 'echo x > /tmp/x && echo x > /app/x && cat /tmp/x /app/x'")
		assert.Check(t, is.Equal(out.Stdout, "x\nx\n"), out.Stderr)
	})
	t.Run("hostname, pwd, user", func(t *testing.T) {
		assert.Check(t, is.Equal(run("hostname").Stdout, pod.Name+"\n"))
		assert.Check(t, is.Equal(run("cat /etc/hostname").Stdout, pod.Name+"\n"))
		assert.Check(t, is.Equal(run("pwd").Stdout, "/app\n"))
		assert.Check(t, is.Equal(run("id -u").Stdout, "1000\n"), "the image's user")
	})
	t.Run("env holds only the container's variables", func(t *testing.T) {
		out := run("env")
		assert.Equal(t, out.ExitCode, 0, out.Stderr)
		vars := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out.Stdout), "\n") {
			k, v, _ := strings.Cut(line, "=")
			vars[k] = v
		}
		assert.Check(t, is.Equal(vars["PATH"], "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
		assert.Check(t, is.Equal(vars["HOME"], "/"))
		for k := range vars {
			switch {
			case k == "PATH" || k == "HOME" || k == "LANG" || k == "PWD":
			case strings.HasPrefix(k, "KUBERNETES_"): // service links, as a kubelet sets them
			default:
				t.Errorf("unexpected variable %s=%s in the sandbox", k, vars[k])
			}
		}
	})
	t.Run("its processes run from sandboxtest-pod", func(t *testing.T) {
		// The cluster network's helper, the pod inits and the runtime
		// server: no process of a pod runs the node's (test) binary.
		roles := map[string]int{}
		for _, pid := range proc.Descendants(os.Getpid()) {
			argv, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			role, _, _ := strings.Cut(string(argv), "\x00")
			if err != nil || !strings.HasPrefix(role, "sandboxtest-") {
				continue
			}
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			if err != nil {
				continue // ended meanwhile
			}
			assert.Check(t, is.Equal(filepath.Base(exe), "sandboxtest-pod"), "%s (pid %d) runs %s", role, pid, exe)
			roles[role]++
		}
		for _, role := range []string{"sandboxtest-cluster-net", "sandboxtest-pod-init", "sandboxtest-runtime-server"} {
			assert.Check(t, roles[role] > 0, "no %s among the test's descendants: %v", role, roles)
		}
	})
	t.Run("the file API and commands see the same /app", func(t *testing.T) {
		upload(t, url, "hello.txt", "uploaded\n")
		assert.Check(t, is.Equal(run("cat /app/hello.txt").Stdout, "uploaded\n"))
		run("sh -c 'echo made by a command > /app/made.txt'")
		resp, err := http.Get(url + "/download/made.txt")
		assert.NilError(t, err)
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Check(t, is.Equal(string(data), "made by a command\n"))
	})
	t.Run("deleting the pod ends all of its processes", func(t *testing.T) {
		out := run("sh -c 'exec >/dev/null 2>&1; sleep 7001 & setsid sleep 7002 & (sleep 7003 &)'")
		assert.Equal(t, out.ExitCode, 0, out.Stderr)
		_, stderr, err := e.exec(pod.Name, "sh", "-c", "sleep 7004 >/dev/null 2>&1 & echo started")
		assert.NilError(t, err, stderr)
		var pids []int
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			if pids = hostSleepers("700"); len(pids) >= 4 {
				return poll.Success()
			}
			return poll.Continue("sleepers on the host: %v", pids)
		}, poll.WithTimeout(10*time.Second))

		assert.NilError(t, e.ext.ExtensionsV1beta1().SandboxClaims(ns).Delete(ctx, claim, metav1.DeleteOptions{}))
		poll.WaitOn(t, e.gone(pod.Name), poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))
		for _, pid := range pids {
			assert.Check(t, !alive(pid), "process %d outlived its pod", pid)
		}
		assert.Check(t, is.Len(hostSleepers("700"), 0))
	})
	t.Run("a fork bomb fails inside its sandbox", func(t *testing.T) {
		claim := e.claim(t, "python-sandbox-template")
		pod := e.readyPod(t, claim)
		url := fmt.Sprintf("http://127.0.0.1:%d", e.portForward(t, pod.Name, 8888))
		out := execute(t, url+"/execute", nil, `/usr/bin/python3 -c "
import os, time
n = 0
try:
    while n < 5000:
        if os.fork() == 0:
            os.closerange(0, 3)
            time.sleep(600)
            os._exit(0)
        n += 1
except OSError as e:
    print('stopped', n, e.errno)
"`)
		assert.Equal(t, out.ExitCode, 0, out.Stderr)
		f := strings.Fields(out.Stdout)
		assert.Assert(t, len(f) == 3 && f[0] == "stopped", "the fork loop was not stopped: %q", out.Stdout)
		n, _ := strconv.Atoi(f[1])
		assert.Check(t, n < processnode.DefaultPodPidsLimit, "%d forks", n)
		assert.Check(t, is.Equal(f[2], strconv.Itoa(int(syscall.EAGAIN))))
		// The machine still forks, and the bomb goes with its pod.
		assert.NilError(t, exec.Command("true").Run())
		assert.NilError(t, e.ext.ExtensionsV1beta1().SandboxClaims(ns).Delete(ctx, claim, metav1.DeleteOptions{}))
		poll.WaitOn(t, e.gone(pod.Name), poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))
	})
}

// upload posts content as name through the runtime's /upload.
func upload(t *testing.T, url, name, content string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", name)
	assert.NilError(t, err)
	_, _ = fw.Write([]byte(content))
	assert.NilError(t, mw.Close())
	resp, err := http.Post(url+"/upload", mw.FormDataContentType(), &body)
	assert.NilError(t, err)
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, resp.StatusCode, http.StatusOK, string(data))
}

// hostSleepers lists host pids of `sleep <prefix>...` processes.
func hostSleepers(prefix string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.HasPrefix(string(b), "sleep\x00"+prefix) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestSandboxIsolationUnprivileged runs TestSandboxIsolation with the whole
// local cluster as uid 65534, from copies of the binaries it executes.
func TestSandboxIsolationUnprivileged(t *testing.T) {
	if os.Getenv(unprivilegedEnv) != "" {
		t.Skip("this is the unprivileged run itself")
	}
	if os.Getuid() != 0 {
		t.Skip("starting the cluster as another user needs root; this run is already unprivileged (uid", os.Getuid(), ")")
	}
	ctx := context.Background()
	bins, err := (&localcluster.Builder{Log: testWriter{t}}).Ensure(ctx)
	assert.NilError(t, err)
	dir, err := os.MkdirTemp("", "sandboxtest-unprivileged-")
	assert.NilError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	assert.NilError(t, os.Chmod(dir, 0o755))
	mk := func(sub string) string {
		p := filepath.Join(dir, sub)
		assert.NilError(t, os.MkdirAll(p, 0o755))
		assert.NilError(t, os.Chown(p, 65534, 65534))
		return p
	}
	binDir := mk("bin")
	for name, src := range bins {
		linkOrCopy(t, src, filepath.Join(binDir, name))
	}
	self, err := os.Executable()
	assert.NilError(t, err)
	exe := filepath.Join(binDir, "localcluster.test")
	linkOrCopy(t, self, exe)
	// Its pods run from the sandboxtest-pod beside it (setupbin.PodBinary).
	podBin, err := setupbin.PodBinary(ctx, setupbin.Options{Log: testWriter{t}})
	assert.NilError(t, err)
	linkOrCopy(t, podBin, filepath.Join(binDir, "sandboxtest-pod"))
	// The CRDs come from the module cache (under /root, which uid 65534
	// cannot read): serve the two modules from a file proxy.
	proxy := mk("proxy")
	gomodcache := os.Getenv("GOMODCACHE")
	if gomodcache == "" {
		gomodcache = filepath.Join(os.Getenv("HOME"), "go", "pkg", "mod")
	}
	for mod, v := range map[string]string{"sigs.k8s.io/agent-sandbox": localcluster.AgentSandboxVersion, "sigs.k8s.io/gateway-api": localcluster.GatewayAPIVersion} {
		src := filepath.Join(gomodcache, "cache", "download", mod, "@v")
		dst := filepath.Join(proxy, mod, "@v")
		assert.NilError(t, os.MkdirAll(dst, 0o755))
		for _, ext := range []string{".info", ".mod", ".zip"} {
			data, err := os.ReadFile(filepath.Join(src, v+ext))
			assert.NilError(t, err)
			assert.NilError(t, os.WriteFile(filepath.Join(dst, v+ext), data, 0o644))
		}
	}
	home, tmp := mk("home"), mk("tmp")

	cmd := exec.Command(exe, "-test.run=^TestSandboxIsolation$", "-test.v", "-test.timeout=10m")
	cmd.Dir = tmp
	cmd.Env = []string{
		unprivilegedEnv + "=1", "HOME=" + home, "TMPDIR=" + tmp, "PATH=/usr/local/go/bin:/usr/bin:/bin",
		"SANDBOXTEST_BIN_DIR=" + binDir, "SANDBOXTEST_CACHE=" + mk("cache"),
		"GOPROXY=file://" + proxy, "GOSUMDB=off", "GOMODCACHE=" + mk("gomod"), "GOCACHE=" + mk("gocache"), "GOTOOLCHAIN=local",
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	t.Logf("TestSandboxIsolation as uid 65534:\n%s", out)
	assert.NilError(t, err)
	assert.Check(t, is.Contains(string(out), "--- PASS: TestSandboxIsolation"))
	assert.Check(t, is.Contains(string(out), "limits: RLIMIT_NPROC"), "the node says which limit is in force")
}

// linkOrCopy makes dst (mode 0755) with src's content, by a hard link when
// the file system allows.
func linkOrCopy(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.Link(src, dst); err == nil {
		return
	}
	data, err := os.ReadFile(src)
	assert.NilError(t, err)
	assert.NilError(t, os.WriteFile(dst, data, 0o755))
}
