package localstate

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// A second BuildLock waits while the first holds the lock, says so, gives
// up with the lock's path when its context ends, and gets it once released.
func TestBuildLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := BuildLock(context.Background(), path, "x", nil)
	assert.NilError(t, err)

	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = BuildLock(ctx, path, "x", &log)
	assert.Check(t, is.ErrorContains(err, "waiting for the build lock "+path))
	assert.Check(t, is.Contains(log.String(), "waiting for another process building x"))

	unlock()
	unlock2, err := BuildLock(context.Background(), path, "x", &log)
	assert.NilError(t, err)
	unlock2()
}
