package sandboxtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentsandbox/go-sandboxtest/connect"
	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// TestRouterRestartCostsNoCall runs a command every 50 ms while the router
// pod is deleted: the tunnel heals to the Deployment's new pod, and each
// call that met the gap never reached a runtime, so it is sent again once
// the router answers. None fails.
func TestRouterRestartCostsNoCall(t *testing.T) {
	const (
		loop     = 12 * time.Second
		deleteAt = 2 * time.Second
	)
	sb := New(t, "python-sandbox-template")
	c := testClients(t)
	ns := sb.s.routerNS()
	deleted := make(chan string, 1)
	go func() {
		time.Sleep(deleteAt)
		pods, err := c.Core.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: kube.RouterAppLabel + "=" + kube.RouterAppValue})
		if err != nil || len(pods.Items) == 0 {
			deleted <- fmt.Sprintf("no router pod deleted (%v)", err)
			return
		}
		var names []string
		for _, p := range pods.Items {
			if err := c.Core.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
				deleted <- fmt.Sprintf("deleting router pod %s: %v", p.Name, err)
				return
			}
			names = append(names, p.Name)
		}
		deleted <- strings.Join(names, " ")
	}()

	var calls, failed int
	var slowest time.Duration
	start := time.Now()
	for time.Since(start) < loop {
		callStart := time.Now()
		res, err := sb.RunE(context.Background(), "echo hi")
		took := time.Since(callStart)
		slowest = max(slowest, took)
		calls++
		switch {
		case err != nil:
			failed++
			t.Errorf("call %d at %s: %v", calls, time.Since(start).Round(time.Millisecond), err)
		case res.Stdout != "hi\n":
			failed++
			t.Errorf("call %d: stdout %q", calls, res.Stdout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	what := <-deleted
	assert.Assert(t, !strings.HasPrefix(what, "no router") && !strings.HasPrefix(what, "deleting"), what)
	t.Logf("deleted router pod %s at %s; %d calls in %s, %d failed, slowest %s; connection now: %s",
		what, deleteAt, calls, loop, failed, slowest.Round(time.Millisecond), sb.c.conn.Describe())
	if sb.c.choice.Mode == connect.ModeTunnel {
		assert.Check(t, strings.Contains(sb.c.conn.Describe(), "re-established"), "the tunnel never healed: %s", sb.c.conn.Describe())
	}
}
