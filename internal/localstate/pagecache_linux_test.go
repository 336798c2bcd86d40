package localstate

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// residentPages counts the pages of path in the page cache.
func residentPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	// mincore(2), which x/sys/unix does not wrap on Linux.
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// A file just written is all in the page cache; forgotten, none of it is,
// and its content is intact.
func TestForgetWrittenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bin")
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if n := residentPages(t, p); n == 0 {
		t.Skipf("a file just written on %s is not in the page cache (a file system without one?)", filepath.Dir(p))
	}
	ForgetWrittenFile(p)
	if n := residentPages(t, p); n != 0 {
		t.Errorf("%d pages still cached", n)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != string(data) {
		t.Errorf("content changed (%v)", err)
	}
}
