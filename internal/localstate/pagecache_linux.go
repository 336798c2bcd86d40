package localstate

import (
	"os"

	"golang.org/x/sys/unix"
)

func forgetWrittenFile(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	// Dirty pages are not dropped: write them out first.
	if f.Sync() == nil {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
}
