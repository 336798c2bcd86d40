package processnode

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// DefaultPodPidsLimit bounds the processes (threads included) of one pod,
// so a fork bomb fails inside its sandbox.
const DefaultPodPidsLimit = 1024

// limiter applies a pod's limits through the first mechanism this node can
// use: a delegated cgroup v2 subtree, the cgroup v1 pids (and memory, cpu)
// hierarchies where writable, else RLIMIT_NPROC, which the kernel does not
// enforce for a node running as root.
type limiter struct {
	v2    string            // base directory for pods in a delegated v2 subtree
	v1    map[string]string // controller -> base directory for pods
	rlim  bool              // RLIMIT_NPROC only
	pids  int64
	about string // what is in force, for the node's start line
}

func newLimiter(pids int64) *limiter {
	l := &limiter{pids: pids, v1: map[string]string{}}
	own := ownCgroups()
	tag := fmt.Sprintf("sandboxtest-%d", os.Getpid())
	if path, ok := own[""]; ok {
		if dir := cgroup2Mount(); dir != "" {
			grp := filepath.Join(dir, path)
			if ctl, err := os.ReadFile(filepath.Join(grp, "cgroup.subtree_control")); err == nil && hasWord(string(ctl), "pids") {
				base := filepath.Join(grp, tag)
				if err := os.Mkdir(base, 0o755); err == nil || errors.Is(err, os.ErrExist) {
					cleanStale(grp)
					l.v2 = base
					l.about = fmt.Sprintf("cgroup v2 (%s): pids.max %d, memory and cpu limits", base, pids)
					return l
				}
			}
		}
	}
	var names []string
	for _, ctl := range []string{"pids", "memory", "cpu"} {
		path, ok := own[ctl]
		if !ok {
			continue
		}
		parent := filepath.Join("/sys/fs/cgroup", own["name:"+ctl], path)
		base := filepath.Join(parent, tag)
		if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			continue // not writable
		}
		cleanStale(parent)
		l.v1[ctl] = base
		names = append(names, ctl)
	}
	if l.v1["pids"] != "" {
		l.about = fmt.Sprintf("cgroup v1 (%s): pids.max %d", strings.Join(names, ", "), pids)
		if l.v1["memory"] != "" {
			l.about += ", memory limits"
		}
		if l.v1["cpu"] != "" {
			l.about += ", cpu limits"
		}
		return l
	}
	for _, dir := range l.v1 {
		_ = os.Remove(dir)
	}
	l.v1 = map[string]string{}
	l.rlim = true
	if os.Getuid() == 0 {
		l.about = "none: no writable cgroup, and RLIMIT_NPROC does not bind root; memory and cpu limits are not applied"
	} else {
		l.about = fmt.Sprintf("RLIMIT_NPROC %d per pod (no writable cgroup: memory and cpu limits are not applied)", pids)
	}
	return l
}

// ownCgroups maps each v1 controller to this process's cgroup path ("" for
// v2), and "name:<controller>" to its hierarchy's directory name.
func ownCgroups() map[string]string {
	out := map[string]string{}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			out[ctl] = parts[2]
			out["name:"+ctl] = parts[1]
		}
	}
	return out
}

// cgroup2Mount finds where the unified hierarchy is mounted.
func cgroup2Mount() string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if _, after, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(after, "cgroup2 ") {
			if f := strings.Fields(line); len(f) > 4 {
				return f[4]
			}
		}
	}
	return ""
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// cleanStale removes the pod groups of nodes that are gone (killed nodes
// leave empty groups behind).
func cleanStale(parent string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "sandboxtest-"))
		if err != nil || !strings.HasPrefix(e.Name(), "sandboxtest-") || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil || errors.Is(syscall.Kill(pid, 0), syscall.EPERM) {
			continue
		}
		removeGroup(filepath.Join(parent, e.Name()))
	}
}

// removeGroup removes a cgroup and its children (rmdir, deepest first).
func removeGroup(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeGroup(filepath.Join(dir, e.Name()))
		}
	}
	_ = os.Remove(dir)
}

// podGroup is one pod's cgroups.
type podGroup struct {
	dirs []groupDir
}

type groupDir struct {
	dir string
	ctl string // its v1 controller; "" for v2
}

// create makes a pod's groups (named id) with the pids limit; limit sets
// the pod's own limits, join says how its processes get in. A spare's groups are
// made and joined ahead of its pod (see spare.go).
func (l *limiter) create(id string) (*podGroup, error) {
	g := &podGroup{}
	var err error
	switch {
	case l.v2 != "":
		var dir string
		if dir, err = g.mk(l.v2, id, ""); err == nil {
			err = write(dir, "pids.max", strconv.FormatInt(l.pids, 10))
		}
	case len(l.v1) > 0:
		for ctl, base := range l.v1 {
			var dir string
			if dir, err = g.mk(base, id, ctl); err != nil {
				break
			}
			if ctl == "pids" {
				if err = write(dir, "pids.max", strconv.FormatInt(l.pids, 10)); err != nil {
					break
				}
			}
		}
	}
	if err != nil {
		g.remove()
		return nil, fmt.Errorf("pod limits: %w", err)
	}
	return g, nil
}

// mk makes the group id under base, the hierarchy of controller ctl ("" for v2).
func (g *podGroup) mk(base, id, ctl string) (string, error) {
	dir := filepath.Join(base, id)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	g.dirs = append(g.dirs, groupDir{dir: dir, ctl: ctl})
	return dir, nil
}

// limit sets the memory and cpu limits of the pod's containers.
func (g *podGroup) limit(containers []corev1.Container) error {
	var mem, cpuMilli int64
	for _, c := range containers {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
			mem += q.Value()
		}
		if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
			cpuMilli += q.MilliValue()
		}
	}
	for _, d := range g.dirs {
		var err error
		switch {
		case d.ctl == "" && mem > 0:
			err = write(d.dir, "memory.max", strconv.FormatInt(mem, 10))
		case d.ctl == "memory" && mem > 0:
			err = write(d.dir, "memory.limit_in_bytes", strconv.FormatInt(mem, 10))
		}
		if err == nil && cpuMilli > 0 {
			switch d.ctl {
			case "":
				err = write(d.dir, "cpu.max", fmt.Sprintf("%d 100000", cpuMilli*100))
			case "cpu":
				if err = write(d.dir, "cpu.cfs_period_us", "100000"); err == nil {
					err = write(d.dir, "cpu.cfs_quota_us", strconv.FormatInt(cpuMilli*100, 10))
				}
			}
		}
		if err != nil {
			return fmt.Errorf("pod limits: %w", err)
		}
	}
	return nil
}

func write(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0o644); err != nil {
		return fmt.Errorf("setting %s: %w", file, err)
	}
	return nil
}

// join is how the pod's processes get into the groups: on cgroup v1 the
// init's thread that starts them moves itself (podinit.Join), on v2 the
// init's process is moved, which v2 requires (its groups take processes,
// not threads).
func (g *podGroup) join() (*podinit.Join, error) {
	j := &podinit.Join{}
	for _, d := range g.dirs {
		if d.ctl == "" {
			return &podinit.Join{Place: g.place}, nil
		}
		f, err := os.OpenFile(filepath.Join(d.dir, "tasks"), os.O_WRONLY, 0)
		if err != nil {
			j.Close()
			return nil, fmt.Errorf("pod limits: %w", err)
		}
		j.Tasks = append(j.Tasks, f)
	}
	return j, nil
}

// place moves pid (the pod's init, before it starts anything) into the groups.
func (g *podGroup) place(pid int) error {
	for _, d := range g.dirs {
		dir := d.dir
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("pod limits: moving the pod init into %s: %w", dir, err)
		}
	}
	return nil
}

// remove deletes the groups once the pod's processes are gone; the kernel
// may take a moment to let go of the last exited task.
func (g *podGroup) remove() {
	for _, d := range g.dirs {
		dir := d.dir
		for i := 0; i < 50; i++ {
			if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// close removes the node's own base groups.
func (l *limiter) close() {
	if l.v2 != "" {
		removeGroup(l.v2)
	}
	for _, dir := range l.v1 {
		removeGroup(dir)
	}
}
