//go:build unix

package setupbin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// lockFile takes an exclusive flock on path, saying so while it waits for
// another process (another package's test binary building the same binary).
func lockFile(ctx context.Context, path string, log io.Writer) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	next := time.Duration(0)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("sandboxtest: locking %s: %w", path, err)
		}
		if waited := time.Since(start); waited >= next {
			fmt.Fprintf(log, "sandboxtest: waiting for another process building sandboxtest-setup (lock %s, %s so far)\n", path, waited.Round(time.Second))
			next += heartbeat
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("sandboxtest: waiting for the build lock %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
