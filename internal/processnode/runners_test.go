package processnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// podIP hands out an address of the shared block for the test's lifetime.
func podIP(t *testing.T) string {
	t.Helper()
	b := testIPs(t)
	ip, err := b.next()
	assert.NilError(t, err)
	t.Cleanup(func() { b.release(ip) })
	return ip
}

// testSandbox starts a pod sandbox with a writable /app (isolated) and
// the given extra mounts.
func testSandbox(t *testing.T, isolated bool, ip string, files ...podinit.Mount) *podinit.Sandbox {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"root", "app"} {
		assert.NilError(t, os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	cfg := podinit.Config{Prep: podinit.Prep{Isolated: isolated}, Hostname: "runner-test", PodIP: ip}
	if isolated {
		cfg.Root = filepath.Join(dir, "root")
		cfg.Mounts = append([]podinit.Mount{{Source: filepath.Join(dir, "app"), Target: "/app"}}, files...)
	}
	var stderr syncBuffer
	sb, err := podinit.Start(cfg, nil, &stderr)
	assert.NilError(t, err, stderr.String())
	t.Cleanup(sb.Kill)
	return sb
}

// waitLog polls the file at path until it contains want, and returns it.
func waitLog(t *testing.T, path, want string) string {
	t.Helper()
	var log string
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		b, _ := os.ReadFile(path)
		log = string(b)
		if strings.Contains(log, want) {
			return poll.Success()
		}
		return poll.Continue("log so far: %q", log)
	}, poll.WithTimeout(5*time.Second), poll.WithDelay(10*time.Millisecond))
	return log
}

func TestRuntimeRunnerServesOnPodIP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		ports []corev1.ContainerPort
		want  string
	}{
		{"default port", nil, "8888"},
		{"first declared port", []corev1.ContainerPort{{ContainerPort: 9001}, {ContainerPort: 9002}}, "9001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ip := podIP(t)
			logPath := filepath.Join(t.TempDir(), "runtime.log")
			c := &Container{
				Spec:  corev1.Container{Name: "runtime", Image: RuntimeImagePattern, Ports: tc.ports},
				PodIP: ip, Dir: "/app", LogPath: logPath, Log: io.Discard,
				Sandbox: testSandbox(t, true, ip), Isolated: true,
			}
			inst, err := RuntimeRunner().Start(context.Background(), c)
			assert.NilError(t, err)
			stopped := false
			defer func() {
				if !stopped {
					_ = inst.Stop(time.Second)
				}
			}()
			addr := net.JoinHostPort(ip, tc.want)
			waitLog(t, logPath, "runtime server listening on http://"+addr+" (root /app)")

			client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := client.Get("http://" + addr + "/")
			assert.NilError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.NilError(t, err)
			assert.Check(t, is.Equal(resp.StatusCode, http.StatusOK))
			var got map[string]string
			assert.NilError(t, json.Unmarshal(body, &got), string(body))
			assert.Check(t, is.Equal(got["status"], "ok"))

			// Only the pod's own address is served: another reserved address
			// of the block, which nothing else binds, is refused.
			_, err = net.DialTimeout("tcp", net.JoinHostPort(podIP(t), tc.want), 200*time.Millisecond)
			assert.Check(t, err != nil, "the runtime server listens beyond its pod IP")

			select {
			case <-inst.Done():
				t.Fatal("Done closed while serving")
			default:
			}
			assert.NilError(t, inst.Stop(time.Second))
			stopped = true
			select {
			case <-inst.Done():
			default:
				t.Fatal("Stop returned before Done closed")
			}
			assert.Check(t, is.Equal(inst.ExitCode(), 0))
			_, err = net.DialTimeout("tcp", addr, 200*time.Millisecond)
			assert.Check(t, err != nil, "still listening on %s after Stop", addr)
			assert.NilError(t, inst.Stop(time.Second), "a second Stop is harmless")
		})
	}
}

func TestRuntimeRunnerPortTaken(t *testing.T) {
	t.Parallel()
	ip := podIP(t)
	listenOn(t, ip, 8888)
	logPath := filepath.Join(t.TempDir(), "runtime.log")
	c := &Container{Spec: corev1.Container{Name: "runtime"}, PodIP: ip, Dir: "/app", LogPath: logPath, Log: io.Discard,
		Sandbox: testSandbox(t, true, ip), Isolated: true}
	inst, err := RuntimeRunner().Start(context.Background(), c)
	assert.NilError(t, err)
	select {
	case <-inst.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the runtime server kept running with its port taken")
	}
	assert.Check(t, is.Equal(inst.ExitCode(), 1))
	assert.Check(t, is.Contains(waitLog(t, logPath, "address already in use"), "sandboxtest-runtime-server: listen tcp "+ip+":8888"))
}

// The script stands in for the sandbox-router binary: it prints its working
// directory, KUBECONFIG and arguments (one a line) and then sleeps.
const fakeRouterScript = `#!/bin/sh
echo "pwd=$(pwd)"
echo "kubeconfig=$KUBECONFIG"
echo "extra=$EXTRA"
echo "id=$(id -u)"
for a in "$@"; do echo "arg=$a"; done
echo "sleeping"
exec sleep 30
`

// Not parallel: writing an executable while other tests fork can make its
// exec fail with "text file busy" (golang.org/issue/22315).
func TestRouterRunnerArgsAndStop(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fake-router")
	assert.NilError(t, os.WriteFile(bin, []byte(fakeRouterScript), 0o755))
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	assert.NilError(t, os.WriteFile(kubeconfig, []byte("apiVersion: v1\n"), 0o600))
	ip := podIP(t)
	logPath := filepath.Join(t.TempDir(), "router.log")
	c := &Container{
		Spec: corev1.Container{
			Name:  "router",
			Image: "registry.example/" + RouterImagePattern + ":v1",
			Args:  []string{"--http-bind-address", "0.0.0.0:8080", "--zap-log-level=debug"},
		},
		PodIP: ip, Dir: "/", LogPath: logPath, Log: io.Discard,
		Env:        []string{"EXTRA=from-pod", "PATH=/usr/bin:/bin"},
		Kubeconfig: kubeconfig, Isolated: true,
	}
	runner := RouterRunner(bin)
	im := runner.(Imager).Image(c)
	assert.Check(t, is.Equal(im.User, int64(65532)))
	for i := range im.Files {
		im.Files[i].ReadOnly = true
	}
	c.Sandbox = testSandbox(t, true, ip, im.Files...)
	inst, err := runner.Start(context.Background(), c)
	assert.NilError(t, err)
	defer inst.Stop(0)

	log := waitLog(t, logPath, "sleeping\n")
	var args []string
	for _, line := range strings.Split(log, "\n") {
		if a, ok := strings.CutPrefix(line, "arg="); ok {
			args = append(args, a)
		}
	}
	want := []string{
		// the image's own arguments first ...
		"--http-bind-address", "0.0.0.0:8080", "--zap-log-level=debug",
		// ... the bind flags last, so they win
		"--http-bind-address", ip + ":8080",
		"--health-probe-bind-address", ip + ":8081",
		"--metrics-bind-address", ip + ":9090",
		// no --allow-loopback-pod-ip: isolated sandboxes have cluster addresses
	}
	assert.Check(t, is.DeepEqual(args, want))
	assert.Check(t, is.Contains(log, "pwd=/\n"))
	assert.Check(t, is.Contains(log, "kubeconfig="+kubeconfigPath+"\n"))
	assert.Check(t, is.Contains(log, "extra=from-pod\n"))

	start := time.Now()
	assert.NilError(t, inst.Stop(2*time.Second))
	assert.Check(t, time.Since(start) < time.Second, "sleep ends on SIGTERM; Stop took %s", time.Since(start))
	select {
	case <-inst.Done():
	default:
		t.Fatal("Stop returned before Done closed")
	}
	assert.Check(t, is.Equal(inst.ExitCode(), 128+int(syscall.SIGTERM)))
}

func TestRouterRunnerMissingBinary(t *testing.T) {
	t.Parallel()
	c := &Container{Spec: corev1.Container{Name: "router"}, PodIP: "127.0.0.1", Dir: t.TempDir(), LogPath: filepath.Join(t.TempDir(), "log"),
		Sandbox: testSandbox(t, false, "127.0.0.1")}
	_, err := RouterRunner(filepath.Join(t.TempDir(), "no-such-router")).Start(context.Background(), c)
	assert.Check(t, is.ErrorContains(err, "no such file or directory"))
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	assert.Check(t, is.Equal(exitCode(nil), 0))
	assert.Check(t, is.Equal(exitCode(errors.New("not an exit")), 1))
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"kill -TERM $$", 128 + int(syscall.SIGTERM)},
		{"kill -KILL $$", 128 + int(syscall.SIGKILL)},
	} {
		err := exec.Command("sh", "-c", tc.script).Run()
		assert.Check(t, is.Equal(exitCode(err), tc.want), "%s: %v", tc.script, err)
	}
	wrapped := fmt.Errorf("wrapped: %w", exec.Command("sh", "-c", "exit 5").Run())
	assert.Check(t, is.Equal(exitCode(wrapped), 5))
}
