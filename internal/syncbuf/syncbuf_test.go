package syncbuf

import (
	"strings"
	"sync"
	"testing"

	"gotest.tools/v3/assert"
)

// TestConcurrentWrites: writes from many goroutines all land, whole, and
// reading while they run is safe (go test -race).
func TestConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("line\n"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, strings.Count(b.String(), "line\n"), 800)
}
