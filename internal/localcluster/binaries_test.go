package localcluster

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/agentsandbox/go-sandboxtest/internal/localstate"
)

// TestEnsureGroupLinksSharedMain: names that share a main package are one
// executable under several names (hard links, so their processes share its
// pages), and the program sees the name it was run as.
func TestEnsureGroupLinksSharedMain(t *testing.T) {
	g := buildGroup{
		name:    "multicall-test",
		version: "v0",
		binaries: map[string]string{
			"one":   "sandboxtest.local/multicall",
			"two":   "sandboxtest.local/multicall",
			"other": "sandboxtest.local/multicall/other",
		},
		module: func(_ context.Context, _ buildGroup, dir string) error {
			if err := os.MkdirAll(filepath.Join(dir, "other"), 0o755); err != nil {
				return err
			}
			return writeFiles(dir, map[string]string{
				"go.mod":        "module sandboxtest.local/multicall\n\ngo 1.26\n",
				"main.go":       "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n\t\"path/filepath\"\n)\n\nfunc main() { fmt.Print(filepath.Base(os.Args[0])) }\n",
				"other/main.go": "package main\n\nfunc main() {}\n",
			})
		},
	}
	b := &Builder{CacheDir: t.TempDir()}
	assert.NilError(t, b.defaults())
	dir, err := b.ensureGroup(context.Background(), g)
	assert.NilError(t, err)

	stat := func(name string) os.FileInfo {
		fi, err := os.Stat(filepath.Join(dir, name))
		assert.NilError(t, err)
		return fi
	}
	assert.Assert(t, os.SameFile(stat("one"), stat("two")), "one and two should be hard links of one executable")
	assert.Assert(t, !os.SameFile(stat("one"), stat("other")), "other has its own main package")
	for _, name := range []string{"one", "two"} {
		out, err := exec.Command(filepath.Join(dir, name)).Output()
		assert.NilError(t, err)
		assert.Equal(t, string(out), name)
	}
}

// TestKubeMainReadsTheIdleGCVariable: the variable the control plane gives
// kube-apiserver is the one kubeMain reads (a rename on one side only would
// leave the idle kube-apiserver at the default GC percent, silently).
func TestKubeMainReadsTheIdleGCVariable(t *testing.T) {
	env := componentEnv(compAPIServer)
	assert.Equal(t, len(env), 1)
	name, value, _ := strings.Cut(env[0], "=")
	assert.Check(t, is.Contains(kubeMain, `os.Getenv("`+name+`")`))
	assert.Equal(t, value, strconv.Itoa(apiServerIdleGOGC))
}

// TestEnsureMarksAndPrunes: a start marks the builds it uses as used, and
// removes another version's build unused for a month.
func TestEnsureMarksAndPrunes(t *testing.T) {
	cache := t.TempDir()
	bin := filepath.Join(cache, "bin")
	month := time.Now().Add(-localstate.UnusedBuildAge - time.Hour)
	for _, g := range buildGroups { // complete, as if built a month ago
		dir := filepath.Join(bin, g.cacheKey())
		assert.NilError(t, os.MkdirAll(dir, 0o755))
		for name := range g.binaries {
			assert.NilError(t, os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755))
		}
		assert.NilError(t, os.WriteFile(dir+".lock", nil, 0o600))
		assert.NilError(t, os.Chtimes(dir, month, month))
	}
	stale := filepath.Join(bin, "kubernetes-v1.35.0-b1")
	assert.NilError(t, os.MkdirAll(stale, 0o755))
	assert.NilError(t, os.WriteFile(stale+".lock", nil, 0o600))
	assert.NilError(t, os.Chtimes(stale, month, month))

	t.Setenv("SANDBOXTEST_BIN_DIR", "") // the cache, not prebuilt binaries
	var log bytes.Buffer
	_, err := (&Builder{CacheDir: cache, Log: &log}).Ensure(context.Background())
	assert.NilError(t, err)
	for _, g := range buildGroups {
		fi, err := os.Stat(filepath.Join(bin, g.cacheKey()))
		assert.NilError(t, err)
		assert.Check(t, time.Since(fi.ModTime()) < time.Minute, "%s not marked as used", g.cacheKey())
	}
	_, err = os.Stat(stale)
	assert.Check(t, os.IsNotExist(err), "the unused build should be removed: %v", err)
	assert.Check(t, is.Contains(log.String(), "removed kubernetes-v1.35.0-b1 from the cache"))
}
