package localcluster

import (
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"

	"github.com/agentsandbox/go-sandboxtest/internal/syncbuf"
)

// TestBuildHeartbeat: while a build runs, each beat names what is being
// built, how many binaries are done and the time so far; none after stop.
func TestBuildHeartbeat(t *testing.T) {
	var log syncbuf.Buffer // written by the heartbeat's goroutine
	p := &buildProgress{log: &log, start: time.Now().Add(-2 * time.Minute), total: 7}
	p.set(BinKubeAPIServer + " " + KubernetesVersion)
	p.built(2)
	stop := p.heartbeat(time.Millisecond)
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if strings.Count(log.String(), "\n") < 2 {
			return poll.Continue("%d lines", strings.Count(log.String(), "\n"))
		}
		return poll.Success()
	}, poll.WithTimeout(10*time.Second), poll.WithDelay(time.Millisecond))
	stop()
	after := log.String()
	first := strings.SplitN(after, "\n", 2)[0]
	assert.Check(t, is.Contains(first, "sandboxtest: still building the local cluster's binaries: kube-apiserver v1.36.3 (2 of 7 binaries done, 2m"))
	assert.Check(t, is.Contains(first, "s so far)"))
	time.Sleep(10 * time.Millisecond)
	assert.Check(t, is.Equal(log.String(), after), "a beat after stop")

	var nilProgress *buildProgress // everything cached: the calls do nothing
	nilProgress.set("x")
	nilProgress.built(1)
}
