//go:build !unix

package localstate

import "os"

func inode(os.FileInfo) (uint64, bool) { return 0, false }
