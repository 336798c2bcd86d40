package localstate

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/gofrs/flock"
)

// BuildLock takes the exclusive lock at path that guards a build into the
// cache, saying on log every 15 s that it waits for what (another test
// binary building the same thing). The returned func releases it.
func BuildLock(ctx context.Context, path, what string, log io.Writer) (unlock func(), err error) {
	l := flock.New(path, flock.SetPermissions(0o600))
	start := time.Now()
	next := time.Duration(0)
	for {
		ok, err := l.TryLock()
		if err != nil {
			return nil, fmt.Errorf("sandboxtest: locking %s: %w", path, err)
		}
		if ok {
			return func() { _ = l.Unlock() }, nil
		}
		if waited := time.Since(start); waited >= next {
			fmt.Fprintf(log, "sandboxtest: waiting for another process building %s (lock %s, %s so far)\n", what, path, waited.Round(time.Second))
			next += 15 * time.Second
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("sandboxtest: waiting for the build lock %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
