// Package setupbin provides the sandboxtest-setup binary at the version of
// this module that the running program was built with, so that a test
// binary can run the local cluster in a separate process without linking it.
package setupbin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/mod/semver"

	"github.com/agentsandbox/go-sandboxtest/internal/localstate"
)

// ModulePath is the module that holds cmd/sandboxtest-setup.
const ModulePath = "github.com/agentsandbox/go-sandboxtest"

// EnvBin names a prebuilt sandboxtest-setup to use instead of building one.
const EnvBin = "SANDBOXTEST_SETUP_BIN"

// Source is where the binary is built from, as the build info tells it.
type Source struct {
	// Version of the module: a release or pseudo-version, "(devel)", or "" when unknown.
	Version string
	// Pinned: the version names immutable source (a dependency at a
	// published version), so a binary cached under that version is reused
	// without calling the go command. Otherwise (the main module, a
	// replace, a dirty or devel build) the source may have changed: go
	// build runs every time, and its own cache makes that cheap.
	Pinned bool
	// Why, for progress lines: "version v1.2.0", "replaced by ../x", ...
	Why string
}

// SourceOf reads this module's entry from a program's build info.
func SourceOf(bi *debug.BuildInfo) Source {
	if bi == nil {
		return Source{Why: "no build info"}
	}
	if bi.Main.Path == ModulePath {
		return Source{Version: bi.Main.Version, Why: "the main module"}
	}
	for _, d := range bi.Deps {
		if d.Path != ModulePath {
			continue
		}
		if d.Replace != nil {
			why := "replaced by " + d.Replace.Path
			if d.Replace.Version != "" {
				why += " " + d.Replace.Version
			}
			return Source{Version: d.Version, Why: why}
		}
		s := Source{Version: d.Version, Why: "version " + d.Version}
		s.Pinned = semver.IsValid(d.Version) && !strings.HasSuffix(d.Version, "+dirty")
		return s
	}
	return Source{Why: "not in the build info"}
}

// CacheKey names the cache folder of a binary from src, built from dir:
// the version when pinned, else a hash of the source folder (two checkouts
// do not overwrite each other's binary).
func CacheKey(src Source, dir string) string {
	if src.Pinned {
		return "sandboxtest-setup-" + strings.NewReplacer("/", "_", "+", "_").Replace(src.Version)
	}
	sum := sha256.Sum256([]byte(dir))
	return "sandboxtest-setup-src-" + hex.EncodeToString(sum[:6])
}

// Options configure Ensure.
type Options struct {
	// CacheDir holds the binary under bin/. Default: localstate.DefaultCacheDir().
	CacheDir string
	// Log receives progress lines: the start of a build, a line every 15 s
	// while it lasts, its end. Default: discard.
	Log io.Writer
}

// heartbeat is the longest a wait goes without a progress line.
const heartbeat = 15 * time.Second

// Ensure returns the path of a sandboxtest-setup binary: $SANDBOXTEST_SETUP_BIN
// when set, else one built from this module's source into the cache, under
// a file lock.
func Ensure(ctx context.Context, o Options) (string, error) {
	if p := os.Getenv(EnvBin); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("sandboxtest: %s=%s is not an executable file; unset it to build sandboxtest-setup from this module's source", EnvBin, p)
		}
		return p, nil
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.CacheDir == "" {
		d, err := localstate.DefaultCacheDir()
		if err != nil {
			return "", err
		}
		o.CacheDir = d
	}
	bi, _ := debug.ReadBuildInfo()
	src := SourceOf(bi)

	if src.Pinned { // the cached binary of a published version never goes stale
		if p := filepath.Join(o.CacheDir, "bin", CacheKey(src, ""), "sandboxtest-setup"); executable(p) {
			return p, nil
		}
	}
	dir, err := sourceDir(ctx, src)
	if err != nil {
		return "", err
	}
	key := CacheKey(src, dir)
	out := filepath.Join(o.CacheDir, "bin", key, "sandboxtest-setup")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	unlock, err := localstate.BuildLock(ctx, filepath.Join(o.CacheDir, "bin", key+".lock"), "sandboxtest-setup", o.Log)
	if err != nil {
		return "", err
	}
	defer unlock()
	if src.Pinned && executable(out) { // built by another process while we waited
		return out, nil
	}
	if err := build(ctx, src, dir, out, o.Log); err != nil {
		return "", err
	}
	return out, nil
}

// sourceDir finds this module's source: `go list -m` resolves the main
// module, a dependency in the module cache and a replace alike; a published
// version can also be downloaded (a vendored module has no folder to list).
func sourceDir(ctx context.Context, src Source) (string, error) {
	gobin, err := goTool()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, gobin, "list", "-m", "-f", "{{.Dir}}", ModulePath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, listErr := cmd.Output()
	if dir := strings.TrimSpace(string(out)); listErr == nil && dir != "" {
		return dir, nil
	}
	if src.Pinned {
		cmd := exec.CommandContext(ctx, gobin, "mod", "download", "-json", ModulePath+"@"+src.Version)
		cmd.Dir = os.TempDir() // outside any module
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		data, _ := cmd.Output()
		var info struct{ Dir, Error string }
		if json.Unmarshal(data, &info) == nil && info.Dir != "" {
			return info.Dir, nil
		}
	}
	return "", fmt.Errorf("sandboxtest: cannot find the source of %s (%s) to build sandboxtest-setup: go list -m: %v %s; run the tests from inside your module, or build it yourself and set %s (go build -o /some/dir/sandboxtest-setup %s/cmd/sandboxtest-setup)",
		ModulePath, src.Why, listErr, strings.TrimSpace(stderr.String()), EnvBin, ModulePath)
}

// build runs go build into out, with a progress line every 15 s: a first
// build compiles the cluster's code and takes minutes.
func build(ctx context.Context, src Source, dir, out string, log io.Writer) error {
	gobin, err := goTool()
	if err != nil {
		return err
	}
	first := !executable(out)
	start := time.Now()
	if first {
		fmt.Fprintf(log, "sandboxtest: building sandboxtest-setup (%s, from %s) into %s; the first build takes a few minutes\n", src.Why, dir, out)
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-C", dir, "-o", out, "./cmd/sandboxtest-setup")
	// The module's own go.mod decides, not a workspace or flags of the
	// caller's; built for this machine, without cgo (no C toolchain needed).
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "CGO_ENABLED=0", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sandboxtest: starting go build of sandboxtest-setup: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("sandboxtest: go build -C %s -o %s ./cmd/sandboxtest-setup: %v\n%s\nfix the build, or set %s to a prebuilt sandboxtest-setup", dir, out, err, tail(output.String(), 30), EnvBin)
			}
			if d := time.Since(start); first || d >= heartbeat {
				fmt.Fprintf(log, "sandboxtest: built sandboxtest-setup in %s\n", d.Round(time.Second))
			}
			return nil
		case <-tick.C:
			fmt.Fprintf(log, "sandboxtest: still building sandboxtest-setup (%s so far)\n", time.Since(start).Round(time.Second))
		}
	}
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// goTool finds the go command: PATH, then the toolchain this program was built with.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", errors.New("sandboxtest: the go command is needed to build sandboxtest-setup and was not found on PATH; install Go or set " + EnvBin + " to a prebuilt binary")
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
