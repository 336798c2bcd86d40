// Package setupbin provides the sandboxtest-setup binary at the version of
// this module that the running program was built with, so that a test
// binary can run the local cluster in a separate process without linking it,
// and the sandboxtest-pod binary that the local cluster's node runs for its
// pods.
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
// a file lock, with a sandboxtest-pod binary beside it (PodBinary).
func Ensure(ctx context.Context, o Options) (string, error) {
	if p := os.Getenv(EnvBin); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("sandboxtest: %s=%s is not an executable file; unset it to build sandboxtest-setup from this module's source", EnvBin, p)
		}
		return p, nil
	}
	dir, err := ensure(ctx, o, setupBinary, podBinary)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, setupBinary.name), nil
}

// PodBinary returns the path of a sandboxtest-pod binary, which the local
// cluster's node runs for its pods' processes: the one beside the running
// executable (Ensure builds them together), else one built from this
// module's source into the cache.
func PodBinary(ctx context.Context, o Options) (string, error) {
	if exe, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(exe), podBinary.name); executable(p) {
			return p, nil
		}
	}
	dir, err := ensure(ctx, o, podBinary)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, podBinary.name), nil
}

// binary is a main package of this module and the file it is built into.
type binary struct{ name, pkg string }

var (
	setupBinary = binary{"sandboxtest-setup", "./cmd/sandboxtest-setup"}
	podBinary   = binary{"sandboxtest-pod", "./internal/sandboxtest-pod"}
)

// ensure builds bins from this module's source into one cache folder,
// under a file lock, and returns that folder.
func ensure(ctx context.Context, o Options, bins ...binary) (string, error) {
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
	built := func(dir string) bool {
		for _, b := range bins {
			if !executable(filepath.Join(dir, b.name)) {
				return false
			}
		}
		return true
	}

	if src.Pinned { // the cached binaries of a published version never go stale
		if d := filepath.Join(o.CacheDir, "bin", CacheKey(src, "")); built(d) {
			localstate.MarkBuildUsed(d)
			return d, nil
		}
	}
	srcDir, err := sourceDir(ctx, src)
	if err != nil {
		return "", err
	}
	key := CacheKey(src, srcDir)
	out := filepath.Join(o.CacheDir, "bin", key)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	unlock, err := localstate.BuildLock(ctx, filepath.Join(o.CacheDir, "bin", key+".lock"), bins[0].name, o.Log)
	if err != nil {
		return "", err
	}
	defer unlock()
	if src.Pinned && built(out) { // built by another process while we waited
		localstate.MarkBuildUsed(out)
		return out, nil
	}
	if err := build(ctx, src, srcDir, out, bins, o.Log); err != nil {
		return "", err
	}
	localstate.MarkBuildUsed(out)
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
func build(ctx context.Context, src Source, dir, out string, bins []binary, log io.Writer) error {
	gobin, err := goTool()
	if err != nil {
		return err
	}
	var names, pkgs []string
	first := false
	for _, b := range bins {
		names = append(names, b.name)
		pkgs = append(pkgs, b.pkg)
		first = first || !executable(filepath.Join(out, b.name))
	}
	what := strings.Join(names, " and ")
	start := time.Now()
	before := map[string]time.Time{} // a binary go build leaves as it was keeps its pages cached
	for _, b := range bins {
		if fi, err := os.Stat(filepath.Join(out, b.name)); err == nil {
			before[b.name] = fi.ModTime()
		}
	}
	if first {
		slow := "" // sandboxtest-pod links no Kubernetes code: seconds
		if bins[0] == setupBinary {
			slow = "; the first build takes a few minutes"
		}
		fmt.Fprintf(log, "sandboxtest: building %s (%s, from %s) into %s%s\n", what, src.Why, dir, out, slow)
	}
	// -o names a folder: each main package becomes the file of its name.
	args := append([]string{"build", "-C", dir, "-o", out + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, gobin, args...)
	// The module's own go.mod decides, not a workspace or flags of the
	// caller's; built for this machine, without cgo (no C toolchain needed).
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "CGO_ENABLED=0", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sandboxtest: starting go build of %s: %w", what, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("sandboxtest: go %s: %v\n%s\nfix the build, or set %s to a prebuilt sandboxtest-setup", strings.Join(args, " "), err, tail(output.String(), 30), EnvBin)
			}
			for _, b := range bins {
				p := filepath.Join(out, b.name)
				if fi, err := os.Stat(p); err == nil && !fi.ModTime().Equal(before[b.name]) {
					localstate.ForgetWrittenFile(p)
				}
			}
			if d := time.Since(start); first || d >= heartbeat {
				fmt.Fprintf(log, "sandboxtest: built %s in %s\n", what, d.Round(time.Second))
			}
			return nil
		case <-tick.C:
			fmt.Fprintf(log, "sandboxtest: still building %s (%s so far)\n", what, time.Since(start).Round(time.Second))
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
