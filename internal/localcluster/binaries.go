package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/modfile"

	"github.com/agentsandbox/go-sandboxtest/internal/localstate"
)

// Pinned versions. Changing one changes the cache key, so the next start rebuilds.
const (
	KubernetesVersion   = "v1.36.3"
	EtcdVersion         = "v3.6.8"
	AgentSandboxVersion = "v0.5.6"
)

// Binary names the local cluster runs.
const (
	BinEtcd              = "etcd"
	BinKubeAPIServer     = "kube-apiserver"
	BinControllerManager = "kube-controller-manager"
	BinScheduler         = "kube-scheduler"
	BinController        = "agent-sandbox-controller"
	BinRouter            = "sandbox-router"
	BinSandboxd          = "sandboxd"
)

// buildGroup is a set of binaries built together from one scratch module.
type buildGroup struct {
	name    string // cache key prefix
	version string
	// binaries maps each binary name to its main package. Names that share
	// a package are one executable under several names (hard links).
	binaries map[string]string
	// module writes go.mod and sources into dir.
	module func(ctx context.Context, g buildGroup, dir string) error
	note   string // shown on first build
	// ldflags stamp versions the way upstream release builds do.
	ldflags string
	// recipe is part of the group's cache key: bump it when the way the
	// group is built changes (flags, scratch module, kubeMain), so caches
	// rebuild it.
	recipe string
}

func (g buildGroup) cacheKey() string { return g.name + "-" + g.version + "-" + g.recipe }

// kubeVersionFlags makes kube-apiserver report v1.36.3 (kubectl version, discovery).
func kubeVersionFlags(v string) string {
	minor := strings.Split(strings.TrimPrefix(v, "v"), ".")[1]
	var b []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		b = append(b, "-X", pkg+".gitVersion="+v, "-X", pkg+".gitMajor=1", "-X", pkg+".gitMinor="+minor, "-X", pkg+".gitTreeState=clean")
	}
	return strings.Join(b, " ")
}

var buildGroups = []buildGroup{
	{
		name:    "kubernetes",
		version: KubernetesVersion,
		binaries: map[string]string{
			// One executable (kubeMain): the processes share its code pages.
			// etcd is the version Kubernetes itself requires (EtcdVersion).
			BinEtcd:              "sandboxtest.local/kubernetes",
			BinKubeAPIServer:     "sandboxtest.local/kubernetes",
			BinControllerManager: "sandboxtest.local/kubernetes",
			BinScheduler:         "sandboxtest.local/kubernetes",
		},
		module:  kubernetesModule,
		note:    "first run only, several minutes",
		ldflags: kubeVersionFlags(KubernetesVersion),
		recipe:  "b6",
	},
	{
		name:    "agent-sandbox",
		version: AgentSandboxVersion,
		binaries: map[string]string{
			BinController: "sigs.k8s.io/agent-sandbox/cmd/agent-sandbox-controller",
			BinRouter:     "sigs.k8s.io/agent-sandbox/sandbox-router/cmd",
			BinSandboxd:   "sigs.k8s.io/agent-sandbox/packages/sandboxd/cmd/sandboxd",
		},
		module: agentSandboxModule,
		note:   "first run only, a few minutes",
		recipe: "b3",
	},
}

// Builder provides the pinned binaries, building them into a cache on first use.
type Builder struct {
	// CacheDir holds built binaries and scratch modules.
	// Default: $SANDBOXTEST_CACHE, else os.UserCacheDir()/sandboxtest.
	CacheDir string
	// BinDir, when set, holds prebuilt binaries by name and nothing is built.
	// Default: $SANDBOXTEST_BIN_DIR.
	BinDir string
	// Log receives progress lines. Default: discard.
	Log io.Writer
}

// DefaultCacheDir is $SANDBOXTEST_CACHE, else os.UserCacheDir()/sandboxtest.
func DefaultCacheDir() (string, error) { return localstate.DefaultCacheDir() }

func (b *Builder) defaults() error {
	if b.Log == nil {
		b.Log = io.Discard
	}
	if b.BinDir == "" {
		b.BinDir = os.Getenv("SANDBOXTEST_BIN_DIR")
	}
	if b.CacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return err
		}
		b.CacheDir = d
	}
	return nil
}

// Ensure returns the path of every pinned binary, building the missing ones.
func (b *Builder) Ensure(ctx context.Context) (map[string]string, error) {
	if err := b.defaults(); err != nil {
		return nil, err
	}
	paths := map[string]string{}
	if b.BinDir != "" {
		var missing []string
		for _, g := range buildGroups {
			for name := range g.binaries {
				p := filepath.Join(b.BinDir, name)
				if _, err := os.Stat(p); err != nil {
					missing = append(missing, name)
				}
				paths[name] = p
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			return nil, fmt.Errorf("SANDBOXTEST_BIN_DIR=%s lacks %s; unset it to build them into the cache", b.BinDir, strings.Join(missing, ", "))
		}
		return paths, nil
	}
	total := 0
	for _, g := range buildGroups {
		if !groupComplete(filepath.Join(b.CacheDir, "bin", g.cacheKey()), g) {
			total += len(g.binaries)
		}
	}
	if total > 0 {
		p := &buildProgress{log: b.Log, start: time.Now(), total: total}
		stop := p.heartbeat(buildHeartbeat)
		defer stop()
		ctx = withBuildProgress(ctx, p)
	}
	for _, g := range buildGroups {
		dir, err := b.ensureGroup(ctx, g)
		if err != nil {
			return nil, err
		}
		localstate.MarkBuildUsed(dir)
		for name := range g.binaries {
			paths[name] = filepath.Join(dir, name)
		}
	}
	// Builds of other versions that no process has used for a month go.
	localstate.PruneBuilds(b.CacheDir, b.Log)
	return paths, nil
}

// ensureGroup builds one group under a file lock, into bin/<name>-<version>.
func (b *Builder) ensureGroup(ctx context.Context, g buildGroup) (string, error) {
	final := filepath.Join(b.CacheDir, "bin", g.cacheKey())
	if groupComplete(final, g) {
		return final, nil
	}
	if err := os.MkdirAll(filepath.Join(b.CacheDir, "bin"), 0o755); err != nil {
		return "", err
	}
	p := progressFrom(ctx)
	p.set("waiting for the build lock of " + g.name + " " + g.version)
	unlock, err := localstate.BuildLock(ctx, filepath.Join(b.CacheDir, "bin", g.cacheKey()+".lock"), "into the cache", b.Log)
	if err != nil {
		return "", err
	}
	defer unlock()
	if groupComplete(final, g) { // another process built it while we waited
		p.built(len(g.binaries))
		return final, nil
	}
	names := make([]string, 0, len(g.binaries))
	for n := range g.binaries {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(b.Log, "sandboxtest: building %s %s (%s) into %s\n", strings.Join(names, ", "), g.version, g.note, final)
	start := time.Now()

	src := filepath.Join(b.CacheDir, "src", g.cacheKey())
	if err := os.RemoveAll(src); err != nil {
		return "", err
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	p.set("downloading the modules of " + g.name + " " + g.version)
	if err := g.module(ctx, g, src); err != nil {
		return "", fmt.Errorf("preparing %s %s build: %w", g.name, g.version, err)
	}
	tmp := final + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	built := map[string]string{} // main package -> its binary in tmp
	for _, name := range names {
		out := filepath.Join(tmp, name)
		if first, ok := built[g.binaries[name]]; ok {
			if err := os.Link(first, out); err != nil {
				return "", fmt.Errorf("linking %s to %s: %w", name, first, err)
			}
			p.built(1)
			continue
		}
		args := []string{"build", "-o", out}
		if g.ldflags != "" {
			args = append(args, "-ldflags", g.ldflags)
		}
		p.set(name + " " + g.version)
		if err := b.goCmd(ctx, src, append(args, g.binaries[name])...); err != nil {
			return "", fmt.Errorf("building %s %s: %w", name, g.version, err)
		}
		localstate.ForgetWrittenFile(out)
		built[g.binaries[name]] = out
		p.built(1)
	}
	_ = os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	fmt.Fprintf(b.Log, "sandboxtest: built %s in %s\n", strings.Join(names, ", "), time.Since(start).Round(time.Second))
	return final, nil
}

func groupComplete(dir string, g buildGroup) bool {
	for name := range g.binaries {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
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
	return "", errors.New("the go command is needed to build the local cluster's binaries and was not found on PATH; install Go or set SANDBOXTEST_BIN_DIR to prebuilt binaries")
}

// goCmd runs the go command in dir; on failure the error carries the output's tail.
func (b *Builder) goCmd(ctx context.Context, dir string, args ...string) error {
	gobin, err := goTool()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, tail(out.String(), 30))
	}
	return nil
}

// moduleInfo asks the go command for a module's files, downloading them if needed.
func moduleInfo(ctx context.Context, path, version string) (dir, gomod string, err error) {
	gobin, err := goTool()
	if err != nil {
		return "", "", err
	}
	cmd := exec.CommandContext(ctx, gobin, "mod", "download", "-json", path+"@"+version)
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	cmd.Dir = os.TempDir()
	out, runErr := cmd.Output()
	var info struct{ Dir, GoMod, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Error != "" || info.Dir == "" {
		if info.Error != "" {
			return "", "", fmt.Errorf("downloading %s@%s: %s", path, version, info.Error)
		}
		return "", "", fmt.Errorf("downloading %s@%s: %v", path, version, runErr)
	}
	return info.Dir, info.GoMod, nil
}

// ModuleDir returns the module cache folder of path@version (downloading it if needed).
func ModuleDir(ctx context.Context, path, version string) (string, error) {
	dir, _, err := moduleInfo(ctx, path, version)
	return dir, err
}

func writeFiles(dir string, files map[string]string) error {
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func kubernetesModule(ctx context.Context, _ buildGroup, dir string) error {
	mod, err := scratchGoMod(ctx, "sandboxtest.local/kubernetes", "k8s.io/kubernetes", KubernetesVersion, "v0"+strings.TrimPrefix(KubernetesVersion, "v1"))
	if err != nil {
		return err
	}
	// etcd is built at the version Kubernetes requires; the pin must say so.
	if want := "\tgo.etcd.io/etcd/server/v3 " + EtcdVersion + "\n"; !strings.Contains(mod, want) {
		return fmt.Errorf("kubernetes %s does not require etcd server %s, the version sandboxtest pins (EtcdVersion)", KubernetesVersion, EtcdVersion)
	}
	return writeFiles(dir, map[string]string{"go.mod": mod, "main.go": kubeMain})
}

func agentSandboxModule(ctx context.Context, g buildGroup, dir string) error {
	mod, err := scratchGoMod(ctx, "sandboxtest.local/agentsandbox", "sigs.k8s.io/agent-sandbox", AgentSandboxVersion, "")
	if err != nil {
		return err
	}
	return writeFiles(dir, map[string]string{"go.mod": mod, "tools.go": toolsFile(g)})
}

// scratchGoMod writes a go.mod that requires path@version and every module
// that path's own go.mod requires, at the same versions, so the build uses
// upstream's pins and needs no `go mod tidy` (which would fetch the test
// dependencies of every package). Replaces pointing at local folders become
// the published module at localVersion (the Kubernetes staging modules,
// required as v0.0.0, are published as v0.36.3 for v1.36.3); with
// localVersion empty they are dropped (etcd's sibling modules are required
// at their real versions already).
func scratchGoMod(ctx context.Context, name, path, version, localVersion string) (string, error) {
	_, gomodPath, err := moduleInfo(ctx, path, version)
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(gomodPath)
	if err != nil {
		return "", err
	}
	upstream, err := modfile.Parse(gomodPath, data, nil)
	if err != nil {
		return "", fmt.Errorf("parsing %s: %w", gomodPath, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "module %s\n\ngo 1.26\n\nrequire (\n\t%s %s\n", name, path, version)
	for _, r := range upstream.Require {
		fmt.Fprintf(&b, "\t%s %s\n", r.Mod.Path, r.Mod.Version)
	}
	b.WriteString(")\n")
	var replaces []string
	for _, r := range upstream.Replace {
		switch {
		case strings.HasPrefix(r.New.Path, "./") || strings.HasPrefix(r.New.Path, "../"):
			if localVersion != "" {
				replaces = append(replaces, fmt.Sprintf("\t%s => %s %s\n", r.Old.Path, r.Old.Path, localVersion))
			}
		case r.New.Version != "":
			replaces = append(replaces, fmt.Sprintf("\t%s => %s %s\n", r.Old.Path, r.New.Path, r.New.Version))
		}
	}
	if len(replaces) > 0 {
		b.WriteString("\nreplace (\n" + strings.Join(replaces, "") + ")\n")
	}
	return b.String(), nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// toolsFile names a group's main packages for readers of the scratch module;
// the build tag keeps it out of every build.
func toolsFile(g buildGroup) string {
	var pkgs []string
	for _, pkg := range g.binaries {
		pkgs = append(pkgs, pkg)
	}
	sort.Strings(pkgs)
	var b strings.Builder
	b.WriteString("//go:build tools\n\npackage tools\n\nimport (\n")
	for _, pkg := range pkgs {
		fmt.Fprintf(&b, "\t_ %q\n", pkg)
	}
	b.WriteString(")\n")
	return b.String()
}
