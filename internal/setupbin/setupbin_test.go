package setupbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestSourceOfAndCacheKey(t *testing.T) {
	dep := func(v string, replace *debug.Module) *debug.BuildInfo {
		return &debug.BuildInfo{
			Main: debug.Module{Path: "example.com/user", Version: "(devel)"},
			Deps: []*debug.Module{
				{Path: "github.com/google/go-cmp", Version: "v0.7.0"},
				{Path: ModulePath, Version: v, Replace: replace},
			},
		}
	}
	for _, tc := range []struct {
		name       string
		bi         *debug.BuildInfo
		wantPinned bool
		wantKey    string // "" : keyed by the source folder
	}{
		{name: "tagged dependency", bi: dep("v1.2.0", nil), wantPinned: true, wantKey: "sandboxtest-setup-v1.2.0"},
		{name: "pseudo-version", bi: dep("v0.0.0-20261130101500-0123456789ab", nil), wantPinned: true, wantKey: "sandboxtest-setup-v0.0.0-20261130101500-0123456789ab"},
		{name: "pre-release with build metadata", bi: dep("v1.3.0-rc.1+meta", nil), wantPinned: true, wantKey: "sandboxtest-setup-v1.3.0-rc.1_meta"},
		{name: "dirty", bi: dep("v1.2.1-0.20261130101500-0123456789ab+dirty", nil)},
		{name: "devel dependency (workspace)", bi: dep("(devel)", nil)},
		{name: "replaced by a folder", bi: dep("v1.2.0", &debug.Module{Path: "../go-sandboxtest"})},
		{name: "replaced by a fork", bi: dep("v1.2.0", &debug.Module{Path: "example.com/fork", Version: "v1.2.0-fix"})},
		{name: "main module", bi: &debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "(devel)"}}},
		{name: "main module at a tag", bi: &debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "v1.2.0"}}},
		{name: "not a dependency", bi: &debug.BuildInfo{Main: debug.Module{Path: "example.com/user"}}},
		{name: "no build info", bi: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := SourceOf(tc.bi)
			assert.Check(t, is.Equal(src.Pinned, tc.wantPinned), "%+v", src)
			if tc.wantKey != "" {
				assert.Check(t, is.Equal(CacheKey(src, "/ignored"), tc.wantKey))
				assert.Check(t, is.Equal(CacheKey(src, "/other"), tc.wantKey))
				return
			}
			a, b := CacheKey(src, "/src/a/go-sandboxtest"), CacheKey(src, "/src/b/go-sandboxtest")
			assert.Check(t, a != b, "two checkouts share the binary %s", a)
			assert.Check(t, is.Equal(a, CacheKey(src, "/src/a/go-sandboxtest")))
			assert.Check(t, is.Regexp(`^sandboxtest-setup-src-[0-9a-f]{12}$`, a))
		})
	}
}

// TestSourceOfThisTestBinary: a test binary of this module sees it as the
// main module, so the binary is always rebuilt (cheaply) from the checkout.
func TestSourceOfThisTestBinary(t *testing.T) {
	bi, ok := debug.ReadBuildInfo()
	assert.Assert(t, ok)
	src := SourceOf(bi)
	assert.Check(t, !src.Pinned, "%+v", src)
	assert.Check(t, is.Equal(src.Why, "the main module"))
}

func TestEnsurePrefersSetupBin(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sandboxtest-setup")
	assert.NilError(t, os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755))
	t.Setenv(EnvBin, bin)
	got, err := Ensure(t.Context(), Options{CacheDir: t.TempDir()})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got, bin))

	t.Setenv(EnvBin, filepath.Join(t.TempDir(), "missing"))
	_, err = Ensure(t.Context(), Options{CacheDir: t.TempDir()})
	assert.Check(t, is.ErrorContains(err, "is not an executable file; unset it"))
}

// TestEnsureBuildsFromTheCheckout builds the binary from this module (the
// main module of this test binary) and runs it; a second Ensure reuses the
// same path, go build finding it up to date (no first-build line).
func TestEnsureBuildsFromTheCheckout(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("needs the go command: %v", err)
	}
	t.Setenv(EnvBin, "")
	cache := t.TempDir()
	var log strings.Builder
	p, err := Ensure(t.Context(), Options{CacheDir: cache, Log: &log})
	assert.NilError(t, err, log.String())
	assert.Check(t, is.Contains(log.String(), "building sandboxtest-setup and sandboxtest-pod (the main module"))
	out, err := exec.Command(p, "local", "serve", "-h").CombinedOutput()
	assert.Check(t, is.Contains(string(out), "-exit-with-stdin"), "%v", err)
	// sandboxtest-pod is built beside it, and says it is not run by hand.
	out, err = exec.Command(filepath.Join(filepath.Dir(p), "sandboxtest-pod")).CombinedOutput()
	assert.Check(t, is.Contains(string(out), "is started by the local cluster's node"), "%v", err)

	log.Reset()
	p2, err := Ensure(t.Context(), Options{CacheDir: cache, Log: &log})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(p2, p))
	assert.Check(t, !strings.Contains(log.String(), "building sandboxtest-setup"), "announced a first build again: %s", log.String())
}

// TestPodBinary: without a sandboxtest-pod beside the running executable
// (this test binary), PodBinary builds one into the cache, once.
func TestPodBinary(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("needs the go command: %v", err)
	}
	cache := t.TempDir()
	var log strings.Builder
	p, err := PodBinary(t.Context(), Options{CacheDir: cache, Log: &log})
	assert.NilError(t, err, log.String())
	assert.Check(t, is.Equal(filepath.Base(p), "sandboxtest-pod"))
	assert.Check(t, strings.HasPrefix(p, cache), "%s is not in the cache %s", p, cache)
	assert.Check(t, is.Contains(log.String(), "building sandboxtest-pod (the main module"))
	assert.Check(t, !strings.Contains(log.String(), "few minutes"), log.String())
	fi, err := os.Stat(p)
	assert.NilError(t, err)
	assert.Check(t, fi.Size() < 32<<20, "sandboxtest-pod is %d bytes: does it link Kubernetes?", fi.Size())

	log.Reset()
	p2, err := PodBinary(t.Context(), Options{CacheDir: cache, Log: &log})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(p2, p))
	assert.Check(t, !strings.Contains(log.String(), "building"), "built again: %s", log.String())
}
