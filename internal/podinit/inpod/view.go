package inpod

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The filesystem view of a pod. There are no images locally, so the host's
// system directories stand in for one, read-only; everything else the pod
// sees is generated or comes from Config.Mounts. Each step fails with the
// path and the errno.

// systemDirs are bind-mounted read-only; a symlink (/bin -> usr/bin) is
// recreated instead.
var systemDirs = []string{"usr", "bin", "sbin", "lib", "lib32", "libx32", "lib64"}

// etcEntries are the parts of the host's /etc that programs such as sh,
// python3 and TLS clients read. Missing ones are skipped.
var etcEntries = []string{
	"ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives",
	"resolv.conf", "nsswitch.conf", "host.conf", "gai.conf", "protocols", "services",
	"localtime", "timezone", "mime.types", "os-release", "debian_version", "locale.alias",
	"ssl/certs", "ssl/openssl.cnf", "ca-certificates", "ca-certificates.conf", "pki/tls/certs", "pki/ca-trust",
	"crypto-policies", "terminfo", "profile", "bash.bashrc", "inputrc",
}

// devNodes are bind-mounted from the host's /dev.
var devNodes = []string{"null", "zero", "full", "random", "urandom", "tty"}

// buildView makes root (an empty directory on the host, created by the
// node) the pod's root: a tmpfs holding the system directories, generated
// files and cfg.Mounts, then pivots into it and drops the host's tree.
func buildView(cfg *Config, root string) error {
	if err := prepareView(root); err != nil {
		return err
	}
	return finishView(cfg, root)
}

// prepareView builds the part of the view that no pod decides (the root
// tmpfs, the system directories, the host's /etc entries, /dev, /proc),
// which a spare init does before its pod is known.
func prepareView(root string) error {
	return runSteps([]step{
		{"making / private", func() error { return mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "") }},
		{"mounting the root tmpfs", func() error { return mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755") }},
		{"system directories", func() error { return bindSystemDirs(root) }},
		{"/etc", func() error { return bindEtc(root) }},
		{"/dev", func() error { return makeDev(root) }},
		{"/proc", func() error { return makeProc(root) }},
	})
}

// finishView adds the pod's part to a prepared view on root (its /etc
// files, cfg.Mounts, its hostname), pivots into it and drops the host's tree.
func finishView(cfg *Config, root string) error {
	return runSteps([]step{
		{"/etc", func() error { return writeEtc(root, cfg) }},
		{"mounts", func() error { return applyMounts(root, cfg.Mounts) }},
		{"pivot_root", func() error { return pivot(root) }},
		{"read-only root", func() error {
			return mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
		}},
		{"hostname", func() error { return unix.Sethostname([]byte(cfg.Hostname)) }},
	})
}

type step struct {
	name string
	fn   func() error
}

func runSteps(steps []step) error {
	for _, s := range steps {
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

func mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		what := target
		if source != "" && flags&unix.MS_BIND != 0 {
			what = source + " on " + target
		}
		return &os.PathError{Op: "mount", Path: what, Err: err}
	}
	return nil
}

// mountAt creates dir root+target and mounts there.
func mountAt(root, target, source, fstype string, flags uintptr, data string) error {
	dst := path.Join(root, target)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return mount(source, dst, fstype, flags, data)
}

func bindSystemDirs(root string) error {
	for _, name := range systemDirs {
		src := "/" + name
		fi, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		dst := path.Join(root, name)
		if fi.Mode()&os.ModeSymlink != 0 {
			link, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, dst); err != nil {
				return err
			}
			continue
		}
		if err := bind(src, dst, true, false); err != nil {
			return err
		}
	}
	return nil
}

// bind mounts src (file or directory, symlinks followed) at dst, creating
// dst, and makes it read-only when asked.
func bind(src, dst string, readOnly, recursive bool) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
	} else {
		if err := os.MkdirAll(path.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	flags := uintptr(unix.MS_BIND)
	if recursive {
		flags |= unix.MS_REC
	}
	if err := mount(src, dst, "", flags, ""); err != nil {
		return err
	}
	if readOnly {
		return remountReadOnly(dst)
	}
	return nil
}

// remountReadOnly makes the bind mount at dst read-only, keeping the flags
// the kernel locks on mounts that came from the host (nosuid, nodev, ...).
func remountReadOnly(dst string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err != nil {
		return &os.PathError{Op: "statfs", Path: dst, Err: err}
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY)
	for _, f := range []struct{ st, ms uintptr }{
		{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f.st != 0 {
			flags |= f.ms
		}
	}
	return mount("", dst, "", flags, "")
}

// bindEtc binds the host's etcEntries into root's /etc, read-only.
func bindEtc(root string) error {
	etc := path.Join(root, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	for _, name := range etcEntries {
		src := path.Join("/etc", name)
		if _, err := os.Stat(src); err != nil {
			continue // absent here (or a dangling link): the pod goes without
		}
		if err := bind(src, path.Join(etc, name), true, false); err != nil {
			return err
		}
	}
	return nil
}

// writeEtc writes the pod's own files into root's /etc.
func writeEtc(root string, cfg *Config) error {
	etc := path.Join(root, "etc")
	home := cfg.Home
	if home == "" {
		home = "/"
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\n"
	group := "root:x:0:\n"
	if cfg.UID != 0 {
		passwd += fmt.Sprintf("sandbox:x:%d:%d:sandbox:%s:/bin/sh\n", cfg.UID, cfg.GID, home)
	}
	if cfg.GID != 0 {
		group += fmt.Sprintf("sandbox:x:%d:\n", cfg.GID)
	}
	passwd += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	group += "nogroup:x:65534:\n"
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if cfg.PodIP != "" {
		hosts += cfg.PodIP + "\t" + cfg.Hostname + "\n"
	}
	for name, content := range map[string]string{
		"hostname": cfg.Hostname + "\n",
		"hosts":    hosts,
		"passwd":   passwd,
		"group":    group,
	} {
		if err := os.WriteFile(path.Join(etc, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func makeDev(root string) error {
	dev := path.Join(root, "dev")
	if err := mountAt(root, "/dev", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=755,size=64k"); err != nil {
		return err
	}
	for _, name := range devNodes {
		if _, err := os.Stat("/dev/" + name); err != nil {
			continue
		}
		if err := bind("/dev/"+name, path.Join(dev, name), false, false); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
		"ptmx": "pts/ptmx",
	} {
		if err := os.Symlink(target, path.Join(dev, name)); err != nil {
			return err
		}
	}
	if err := mountAt(root, "/dev/pts", "devpts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620"); err != nil {
		return err
	}
	return mountAt(root, "/dev/shm", "shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k")
}

// Parts of /proc that reach beyond the pod: read-only, or hidden, as
// container runtimes do (a node running as root maps root into the pod).
var (
	procReadOnly = []string{"sys", "sysrq-trigger", "irq", "bus", "fs"}
	procMasked   = []string{"kcore", "keys", "timer_list", "sched_debug", "latency_stats", "acpi", "scsi"}
)

func makeProc(root string) error {
	if err := mountAt(root, "/proc", "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	proc := path.Join(root, "proc")
	for _, name := range procReadOnly {
		p := path.Join(proc, name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := remountReadOnly(p); err != nil {
			return err
		}
	}
	for _, name := range procMasked {
		p := path.Join(proc, name)
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if fi.IsDir() {
			err = mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
		} else {
			err = mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// applyMounts mounts cfg.Mounts, parents before children.
func applyMounts(root string, mounts []Mount) error {
	ms := append([]Mount(nil), mounts...)
	sort.SliceStable(ms, func(i, j int) bool { return depth(ms[i].Target) < depth(ms[j].Target) })
	for _, m := range ms {
		if !path.IsAbs(m.Target) {
			return fmt.Errorf("mount target %q is not an absolute path", m.Target)
		}
		dst := path.Join(root, m.Target)
		if m.Tmpfs {
			opts := "mode=1777"
			if m.SizeLimit > 0 {
				opts += ",size=" + strconv.FormatInt(m.SizeLimit, 10)
			}
			flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
			if m.ReadOnly {
				flags |= unix.MS_RDONLY
			}
			if err := mountAt(root, m.Target, "tmpfs", "tmpfs", flags, opts); err != nil {
				return err
			}
			continue
		}
		if err := bind(m.Source, dst, m.ReadOnly, true); err != nil {
			return err
		}
	}
	return nil
}

func depth(p string) int { return strings.Count(path.Clean(p), "/") }

// pivot makes root the root directory and detaches the host's tree.
func pivot(root string) error {
	old := path.Join(root, ".oldroot")
	if err := os.Mkdir(old, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(root, old); err != nil {
		return &os.PathError{Op: "pivot_root", Path: root, Err: err}
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.oldroot", unix.MNT_DETACH); err != nil {
		return &os.PathError{Op: "umount", Path: "/.oldroot", Err: err}
	}
	return os.Remove("/.oldroot")
}
