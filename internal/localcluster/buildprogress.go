package localcluster

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// buildHeartbeat is the longest a build goes without a progress line: a
// first build takes minutes, and a silent one looks hung.
const buildHeartbeat = 15 * time.Second

// buildProgress says, every heartbeat, what is being built, for how long,
// and how many of the binaries to build are done.
type buildProgress struct {
	log   io.Writer
	start time.Time
	total int

	mu   sync.Mutex
	what string
	done int
}

func (p *buildProgress) set(what string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.what = what
	p.mu.Unlock()
}

func (p *buildProgress) built(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.done += n
	p.mu.Unlock()
}

// line is the heartbeat's text.
func (p *buildProgress) line(now time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("sandboxtest: still building the local cluster's binaries: %s (%d of %d binaries done, %s so far)",
		p.what, p.done, p.total, now.Sub(p.start).Round(time.Second))
}

// heartbeat writes line every interval until the returned stop is called.
func (p *buildProgress) heartbeat(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				fmt.Fprintln(p.log, p.line(now))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

type buildProgressKey struct{}

func withBuildProgress(ctx context.Context, p *buildProgress) context.Context {
	return context.WithValue(ctx, buildProgressKey{}, p)
}

// progressFrom is the build's progress, nil (which does nothing) when
// everything was built already.
func progressFrom(ctx context.Context) *buildProgress {
	p, _ := ctx.Value(buildProgressKey{}).(*buildProgress)
	return p
}
