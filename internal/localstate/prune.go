package localstate

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/gofrs/flock"
)

// UnusedBuildAge is how long a build in the cache may go unused before
// PruneBuilds removes it. Each sandboxtest version builds its own binaries
// (about 170 MB for Kubernetes, 190 MB for agent-sandbox, 120 MB for
// sandboxtest-setup), so every upgrade would otherwise leave the last
// version's behind; other projects on the machine may pin other versions,
// whose builds stay for as long as they are used.
const UnusedBuildAge = 30 * 24 * time.Hour

// buildName matches the folders the cache's builders make under bin/: a
// build group's <name>-<version>-b<recipe>, and sandboxtest-setup's
// sandboxtest-setup-src-<hash>.
var buildName = regexp.MustCompile(`^([a-z][a-z0-9-]*-v[0-9][0-9A-Za-z.+-]*-b[0-9]+|sandboxtest-setup-src-[0-9a-f]{12})$`)

// MarkBuildUsed records a use of the build folder dir (its modification
// time), which PruneBuilds reads.
func MarkBuildUsed(dir string) {
	now := time.Now()
	_ = os.Chtimes(dir, now, now)
}

// PruneBuilds removes from cacheDir every build not used for
// UnusedBuildAge: its folder under bin/, an unfinished build beside it, and
// its scratch module under src/. Only folders named as the builders name
// them that have a build lock beside them are considered (a cache
// directory shared with other files loses none of them), and none whose
// lock another process holds. The empty lock file stays: a process waiting
// for it holds it open, and a new file under that name would let a second
// builder in beside it. It says on log what it removed.
func PruneBuilds(cacheDir string, log io.Writer) {
	bin := filepath.Join(cacheDir, "bin")
	entries, err := os.ReadDir(bin)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !buildName.MatchString(e.Name()) {
			continue
		}
		if err := pruneBuild(cacheDir, e.Name(), log); err != nil {
			fmt.Fprintf(log, "sandboxtest: removing the unused build %s from the cache: %v\n", filepath.Join(bin, e.Name()), err)
		}
	}
}

func pruneBuild(cacheDir, key string, log io.Writer) error {
	dir := filepath.Join(cacheDir, "bin", key)
	lockPath := dir + ".lock"
	if _, err := os.Stat(lockPath); err != nil {
		return nil // not made by a builder
	}
	if unused, err := unusedFor(dir); err != nil || unused < UnusedBuildAge {
		return nil
	}
	l := flock.New(lockPath)
	ok, err := l.TryLock()
	if err != nil || !ok {
		return nil // being built or checked by another process
	}
	defer l.Unlock()
	unused, err := unusedFor(dir) // marked in the meantime?
	if err != nil || unused < UnusedBuildAge {
		return nil
	}
	size := treeSize(dir)
	for _, p := range []string{dir, dir + ".tmp", filepath.Join(cacheDir, "src", key)} {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	fmt.Fprintf(log, "sandboxtest: removed %s from the cache (%d MB, unused for %d days)\n", key, size>>20, int(unused.Hours()/24))
	return nil
}

func unusedFor(dir string) (time.Duration, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, err
	}
	return time.Since(fi.ModTime()), nil
}

// treeSize is the bytes of the regular files under dir, each inode once
// (a build group's names are hard links of one executable).
func treeSize(dir string) int64 {
	var total int64
	seen := map[uint64]bool{}
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if ino, ok := inode(fi); ok {
			if seen[ino] {
				return nil
			}
			seen[ino] = true
		}
		total += fi.Size()
		return nil
	})
	return total
}
