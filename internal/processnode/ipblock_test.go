package processnode

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// privateLockDir points claimLoopbackBlock at a fresh temp dir, so these tests
// neither see nor take the blocks of other sandboxtest processes.
func privateLockDir(t *testing.T) string {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	assert.Equal(t, os.TempDir(), dir)
	return dir
}

func TestAddrPoolUniqueAndValid(t *testing.T) {
	_, cidr, _ := net.ParseCIDR("10.244.0.0/16")
	p := newAddrPool(cidr)
	seen := map[string]bool{}
	for i := 0; i < 3*256; i++ { // crosses several /24 boundaries
		ip, err := p.next()
		assert.NilError(t, err)
		assert.Assert(t, !seen[ip], "address %s handed out twice", ip)
		seen[ip] = true
		assert.Assert(t, cidr.Contains(net.ParseIP(ip)), ip)
	}
	assert.Check(t, !seen["10.244.0.0"] && !seen["10.244.0.1"], "the network or the gateway was handed out")
	assert.Check(t, seen["10.244.0.2"] && seen["10.244.1.0"] && seen["10.244.3.1"])
}

func TestAddrPoolReleaseMakesAddressReusable(t *testing.T) {
	_, cidr, _ := net.ParseCIDR("10.9.8.0/24")
	p := newAddrPool(cidr)
	const usable = 256 - 3 // minus the network, the gateway and broadcast
	var all []string
	for {
		ip, err := p.next()
		if err != nil {
			assert.Check(t, is.ErrorContains(err, "10.9.8.0/24 are in use"))
			break
		}
		all = append(all, ip)
		assert.Assert(t, len(all) <= usable, "more addresses than the network holds")
	}
	assert.Equal(t, len(all), usable)
	assert.Check(t, is.Equal(all[len(all)-1], "10.9.8.254"))

	freed := all[len(all)/2]
	p.release(freed)
	ip, err := p.next()
	assert.NilError(t, err)
	assert.Equal(t, ip, freed)
	_, err = p.next()
	assert.Check(t, err != nil, "the pool should be full again")
}

func TestLoopbackBlockAddresses(t *testing.T) {
	privateLockDir(t)
	b, err := claimLoopbackBlock()
	assert.NilError(t, err)
	defer b.close()
	ip, err := b.next()
	assert.NilError(t, err)
	assert.Check(t, is.Equal(ip, fmt.Sprintf("127.%d.0.2", b.block)))
	assert.Check(t, net.ParseIP(ip).IsLoopback())
}

func TestClaimIPBlockDistinctAndClosable(t *testing.T) {
	dir := privateLockDir(t)
	a, err := claimLoopbackBlock()
	assert.NilError(t, err)
	b, err := claimLoopbackBlock()
	assert.NilError(t, err)
	defer b.close()
	assert.Check(t, a.block != b.block, "two claims in one process got block %d", a.block)

	lockPath := filepath.Join(dir, fmt.Sprintf("sandboxtest-ipblock-127.%d.lock", a.block))
	assert.Check(t, !canLock(t, lockPath), "block %d is claimed but its lock file is free", a.block)

	a.close()
	assert.Check(t, canLock(t, lockPath), "block %d is still locked after close", a.block)

	c, err := claimLoopbackBlock()
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
	last, err := claimLoopbackBlock()
	assert.NilError(t, err)
	defer last.close()
	assert.Check(t, is.Equal(last.block, 249), "the last block is 127.249")

	_, err = claimLoopbackBlock()
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
