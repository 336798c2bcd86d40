package processnode

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// addrPool hands out pod addresses from a network, skipping its first two
// (the network and the gateway) and its last (broadcast).
type addrPool struct {
	cidr  *net.IPNet
	size  uint32
	lock  *os.File // held for the pool's life when the addresses are the host's
	block int      // b of a loopback pool's 127.b.0.0/16

	mu     sync.Mutex
	cursor uint32
	used   map[string]bool
}

func newAddrPool(cidr *net.IPNet) *addrPool {
	ones, bits := cidr.Mask.Size()
	return &addrPool{cidr: cidr, size: 1 << (bits - ones), cursor: 2, used: map[string]bool{}}
}

// claimLoopbackBlock is the pool of a node whose pods share the host's
// network (SANDBOXTEST_UNISOLATED=1): a 127.<b>.0.0/16 block held by a flock
// in the temp dir, so nodes of concurrent test binaries never share
// addresses; the kernel drops the lock when the process dies.
func claimLoopbackBlock() (*addrPool, error) {
	for b := 10; b < 250; b++ {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("sandboxtest-ipblock-127.%d.lock", b))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue
			}
			return nil, err
		}
		_, cidr, _ := net.ParseCIDR(fmt.Sprintf("127.%d.0.0/16", b))
		p := newAddrPool(cidr)
		p.lock, p.block = f, b
		return p, nil
	}
	return nil, errors.New("no free 127.x.0.0/16 block for pod addresses: 240 local nodes are running")
}

// next returns an unused address.
func (p *addrPool) next() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	base := p.cidr.IP.To4()
	b := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for tries := uint32(0); tries < p.size; tries++ {
		n := p.cursor
		if p.cursor++; p.cursor >= p.size-1 {
			p.cursor = 2
		}
		v := b + n
		ip := net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).String()
		if !p.used[ip] {
			p.used[ip] = true
			return ip, nil
		}
	}
	return "", fmt.Errorf("all pod addresses of %s are in use", p.cidr)
}

func (p *addrPool) release(ip string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, ip)
}

func (p *addrPool) close() {
	if p.lock != nil {
		_ = syscall.Flock(int(p.lock.Fd()), syscall.LOCK_UN)
		p.lock.Close()
	}
}
