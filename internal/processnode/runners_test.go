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
			log := &syncBuffer{}
			c := &Container{
				Spec:  corev1.Container{Name: "runtime", Image: RuntimeImagePattern, Ports: tc.ports},
				PodIP: ip, Dir: t.TempDir(), Log: log,
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
			assert.Check(t, is.Contains(log.String(), "runtime server listening on http://"+addr))

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
	c := &Container{Spec: corev1.Container{Name: "runtime"}, PodIP: ip, Dir: t.TempDir(), Log: io.Discard}
	_, err := RuntimeRunner().Start(context.Background(), c)
	assert.Check(t, is.ErrorContains(err, "runtime server for runtime"))
	assert.Check(t, is.ErrorIs(err, syscall.EADDRINUSE))
}

// The script stands in for the sandbox-router binary: it prints its working
// directory, KUBECONFIG and arguments (one a line) and then sleeps.
const fakeRouterScript = `#!/bin/sh
echo "pwd=$(pwd)"
echo "kubeconfig=$KUBECONFIG"
echo "extra=$EXTRA"
for a in "$@"; do echo "arg=$a"; done
echo "sleeping"
exec sleep 30
`

// Not parallel: writing an executable while other tests fork can make its
// exec fail with "text file busy" (golang.org/issue/22315).
func TestRouterRunnerArgsAndStop(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fake-router")
	assert.NilError(t, os.WriteFile(bin, []byte(fakeRouterScript), 0o755))
	ip := podIP(t)
	dir := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "router.log")
	c := &Container{
		Spec: corev1.Container{
			Name:  "router",
			Image: "registry.example/" + RouterImagePattern + ":v1",
			Args:  []string{"--http-bind-address", "0.0.0.0:8080", "--zap-log-level=debug"},
		},
		PodIP: ip, Dir: dir, LogPath: logPath, Log: io.Discard,
		Env:        []string{"EXTRA=from-pod", "PATH=" + os.Getenv("PATH")},
		Kubeconfig: "/tmp/some/kubeconfig",
	}
	inst, err := RouterRunner(bin).Start(context.Background(), c)
	assert.NilError(t, err)
	defer inst.Stop(0)

	var log string
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		b, _ := os.ReadFile(logPath)
		log = string(b)
		if strings.Contains(log, "sleeping\n") {
			return poll.Success()
		}
		return poll.Continue("log so far: %q", log)
	}, poll.WithTimeout(5*time.Second), poll.WithDelay(10*time.Millisecond))

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
		"--allow-loopback-pod-ip",
	}
	assert.Check(t, is.DeepEqual(args, want))
	assert.Check(t, is.Contains(log, "pwd="+dir+"\n"))
	assert.Check(t, is.Contains(log, "kubeconfig=/tmp/some/kubeconfig\n"))
	assert.Check(t, is.Contains(log, "extra=from-pod\n"))

	pi, ok := inst.(*processInstance)
	assert.Assert(t, ok, "%T", inst)
	pid := pi.p.Pid()
	assert.NilError(t, syscall.Kill(pid, 0), "the process runs")

	start := time.Now()
	assert.NilError(t, inst.Stop(2*time.Second))
	assert.Check(t, time.Since(start) < time.Second, "sleep ends on SIGTERM; Stop took %s", time.Since(start))
	select {
	case <-inst.Done():
	default:
		t.Fatal("Stop returned before Done closed")
	}
	assert.Check(t, is.Equal(inst.ExitCode(), 128+int(syscall.SIGTERM)))
	err = syscall.Kill(pid, 0)
	assert.Check(t, errors.Is(err, syscall.ESRCH), "process %d still exists: %v", pid, err)
}

func TestRouterRunnerMissingBinary(t *testing.T) {
	t.Parallel()
	c := &Container{Spec: corev1.Container{Name: "router"}, PodIP: "127.0.0.1", Dir: t.TempDir(), LogPath: filepath.Join(t.TempDir(), "log")}
	_, err := RouterRunner(filepath.Join(t.TempDir(), "no-such-router")).Start(context.Background(), c)
	assert.Check(t, is.ErrorIs(err, os.ErrNotExist))
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
