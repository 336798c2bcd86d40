package localcluster_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	"gotest.tools/v3/poll"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
	"github.com/agentsandbox/go-sandboxtest/internal/proc"
)

// parentEnv, when set, makes the test binary act as a process that owns a
// local cluster (with a router pod and a sandbox running a command), prints
// what it runs, and waits to be killed.
const parentEnv = "SANDBOXTEST_TEST_CLUSTER_PARENT"

func TestMain(m *testing.M) {
	if dir := os.Getenv(parentEnv); dir != "" {
		if err := runClusterParent(dir); err != nil {
			fmt.Fprintln(os.Stderr, "cluster parent:", err)
			os.Exit(2)
		}
		select {} // until killed
	}
	os.Exit(m.Run())
}

// parentReport is what the cluster parent prints once everything runs.
type parentReport struct {
	Pids  []int    // its child processes
	Addrs []string // listening addresses of the cluster and its pods
}

func runClusterParent(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: dir}, nil)
	if err != nil {
		return err
	}
	cs := kubernetes.NewForConfigOrDie(c.RESTConfig)
	ext := extclient.NewForConfigOrDie(c.RESTConfig)
	tmpl, pool := templateAndPool("python-sandbox-template", runtimeImage)
	if _, err := ext.ExtensionsV1beta1().SandboxTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := ext.ExtensionsV1beta1().SandboxWarmPools(ns).Create(ctx, pool, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := ext.ExtensionsV1beta1().SandboxClaims(ns).Create(ctx, newClaim("python-sandbox-template"), metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, routerDeployment(), metav1.CreateOptions{}); err != nil {
		return err
	}
	// Wait for both pods to be Ready.
	var sandboxIP, routerIP string
	for sandboxIP == "" || routerIP == "" {
		if ctx.Err() != nil {
			return fmt.Errorf("pods not ready: %w", ctx.Err())
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if !kube.PodReady(&p) {
				continue
			}
			if p.Labels["app"] == "sandbox-router" {
				routerIP = p.Status.PodIP
			} else {
				sandboxIP = p.Status.PodIP
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A command that would outlive us if nothing took care of it.
	go podClient(c).Post("http://"+sandboxIP+":8888/execute", "application/json", strings.NewReader(`{"command":"sleep 600"}`))
	for !hasDescendant("sleep") { // in the sandbox's PID namespace, under its init
		time.Sleep(20 * time.Millisecond)
	}
	// The node's spare pod init, made after the sandbox's start, is among
	// the processes that must end: the helper, two pods' inits and it.
	for len(c.Node.Provider.Pids()) < 4 {
		time.Sleep(20 * time.Millisecond)
	}
	api, _ := url.Parse(c.APIServerURL)
	etcd, _ := url.Parse(c.EtcdURL)
	// The pods' addresses are in the cluster's network namespace, which
	// ends with its helper, one of the descendants.
	rep := parentReport{
		Pids:  proc.Descendants(os.Getpid()),
		Addrs: []string{api.Host, etcd.Host, c.Node.Addr},
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

func hasDescendant(comm string) bool {
	for _, pid := range proc.Descendants(os.Getpid()) {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(data)) == comm {
			return true
		}
	}
	return false
}

// TestParentDeathLeavesNothing kills a process that owns a running local
// cluster, by SIGTERM and by SIGKILL, and checks that every process it
// started is gone and every address it listened on is closed.
func TestParentDeathLeavesNothing(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			exe, err := os.Executable()
			assert.NilError(t, err)
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), parentEnv+"="+t.TempDir())
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			assert.NilError(t, err)
			assert.NilError(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

			line, err := bufio.NewReader(stdout).ReadString('\n')
			assert.NilError(t, err, "cluster parent failed: %s", stderr.String())
			var rep parentReport
			assert.NilError(t, json.Unmarshal([]byte(line), &rep))
			assert.Assert(t, len(rep.Pids) >= 7, "expected etcd, 3 kube components, controller, router and sleep; got %v", rep.Pids)
			for _, a := range rep.Addrs {
				assert.Assert(t, listening(a), "%s not listening before the kill", a)
			}

			assert.NilError(t, cmd.Process.Signal(sig))
			_ = cmd.Wait()
			poll.WaitOn(t, func(poll.LogT) poll.Result {
				for _, pid := range rep.Pids {
					if alive(pid) {
						data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
						return poll.Continue("process %d (%s) still alive", pid, bytes.ReplaceAll(data, []byte{0}, []byte{' '}))
					}
				}
				for _, a := range rep.Addrs {
					if listening(a) {
						return poll.Continue("%s still listening", a)
					}
				}
				return poll.Success()
			}, poll.WithTimeout(15*time.Second), poll.WithDelay(50*time.Millisecond))
		})
	}
}

func listening(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
