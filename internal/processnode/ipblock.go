package processnode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// ipBlock hands out pod addresses from 127.<block>.0.0/16. The block is held
// by a flock in the temp dir, so nodes of concurrent test binaries never
// share addresses; the kernel drops the lock when the process dies.
type ipBlock struct {
	block int
	lock  *os.File

	mu     sync.Mutex
	cursor int
	used   map[string]bool
}

func claimIPBlock() (*ipBlock, error) {
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
		return &ipBlock{block: b, lock: f, cursor: 1, used: map[string]bool{}}, nil
	}
	return nil, errors.New("no free 127.x.0.0/16 block for pod addresses: 240 local nodes are running")
}

// next returns an unused address, skipping .0 and .255 host parts.
func (b *ipBlock) next() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for tries := 0; tries < 65536; tries++ {
		n := b.cursor
		b.cursor = b.cursor%65535 + 1
		if lo := n & 0xff; lo == 0 || lo == 255 {
			continue
		}
		ip := fmt.Sprintf("127.%d.%d.%d", b.block, n>>8, n&0xff)
		if !b.used[ip] {
			b.used[ip] = true
			return ip, nil
		}
	}
	return "", fmt.Errorf("all pod addresses of 127.%d.0.0/16 are in use", b.block)
}

func (b *ipBlock) release(ip string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.used, ip)
}

func (b *ipBlock) close() {
	_ = syscall.Flock(int(b.lock.Fd()), syscall.LOCK_UN)
	b.lock.Close()
}
