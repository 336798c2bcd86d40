package processnode

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// privateLockDir points claimIPBlock at a fresh temp dir, so these tests
// neither see nor take the blocks of other sandboxtest processes.
func privateLockDir(t *testing.T) string {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	assert.Equal(t, os.TempDir(), dir)
	return dir
}

func TestIPBlockAddressesUniqueAndValid(t *testing.T) {
	privateLockDir(t)
	b, err := claimIPBlock()
	assert.NilError(t, err)
	defer b.close()

	prefix := fmt.Sprintf("127.%d.", b.block)
	seen := map[string]bool{}
	for i := 0; i < 3*256; i++ { // crosses several /24 boundaries
		ip, err := b.next()
		assert.NilError(t, err)
		assert.Assert(t, !seen[ip], "address %s handed out twice", ip)
		seen[ip] = true
		assert.Assert(t, strings.HasPrefix(ip, prefix), ip)
		parsed := net.ParseIP(ip).To4()
		assert.Assert(t, parsed != nil, ip)
		assert.Assert(t, parsed.IsLoopback(), ip)
		assert.Assert(t, parsed[3] != 0 && parsed[3] != 255, "host part .%d handed out: %s", parsed[3], ip)
	}
	// 768 addresses need three /24s minus their .0 and .255: 254 each.
	assert.Check(t, seen[prefix+"0.1"])
	assert.Check(t, seen[prefix+"1.254"])
	assert.Check(t, seen[prefix+"3.1"])
}

func TestIPBlockReleaseMakesAddressReusable(t *testing.T) {
	t.Parallel() // a block of its own, though nothing is bound on it
	b, err := claimIPBlock()
	assert.NilError(t, err)
	defer b.close()

	// Exhaust the block: 256 /24s of 254 usable host parts each.
	const usable = 256 * 254
	var all []string
	for {
		ip, err := b.next()
		if err != nil {
			assert.Check(t, is.ErrorContains(err, fmt.Sprintf("127.%d.0.0/16 are in use", b.block)))
			break
		}
		all = append(all, ip)
		assert.Assert(t, len(all) <= usable, "more addresses than the block holds")
	}
	assert.Equal(t, len(all), usable)

	freed := all[len(all)/2]
	b.release(freed)
	ip, err := b.next()
	assert.NilError(t, err)
	assert.Equal(t, ip, freed)
	_, err = b.next()
	assert.Check(t, err != nil, "the block should be full again")
}

func TestClaimIPBlockDistinctAndClosable(t *testing.T) {
	dir := privateLockDir(t)
	a, err := claimIPBlock()
	assert.NilError(t, err)
	b, err := claimIPBlock()
	assert.NilError(t, err)
	defer b.close()
	assert.Check(t, a.block != b.block, "two claims in one process got block %d", a.block)

	lockPath := filepath.Join(dir, fmt.Sprintf("sandboxtest-ipblock-127.%d.lock", a.block))
	assert.Check(t, !canLock(t, lockPath), "block %d is claimed but its lock file is free", a.block)

	a.close()
	assert.Check(t, canLock(t, lockPath), "block %d is still locked after close", a.block)

	c, err := claimIPBlock()
	assert.NilError(t, err)
	defer c.close()
	assert.Check(t, is.Equal(c.block, a.block), "the freed block is the lowest free one")
}

func TestClaimIPBlockAllTaken(t *testing.T) {
	dir := privateLockDir(t)
	// Other processes hold blocks 10 to 248.
	for b := 10; b < 249; b++ {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("sandboxtest-ipblock-127.%d.lock", b)), os.O_CREATE|os.O_RDWR, 0o666)
		assert.NilError(t, err)
		defer f.Close()
		assert.NilError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))
	}
	last, err := claimIPBlock()
	assert.NilError(t, err)
	defer last.close()
	assert.Check(t, is.Equal(last.block, 249), "the last block is 127.249")

	_, err = claimIPBlock()
	assert.Check(t, is.ErrorContains(err, "no free 127.x.0.0/16 block"))
}

// canLock reports whether a new open file description can take the flock.
func canLock(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	assert.NilError(t, err)
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return true
	}
	assert.Assert(t, is.ErrorIs(err, syscall.EWOULDBLOCK))
	return false
}
