package processnode

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// UnisolatedEnv, set to 1, runs pods without namespaces, as processes of
// the developer in the developer's filesystem (the node warns on every run).
const UnisolatedEnv = "SANDBOXTEST_UNISOLATED"

// Image is what a container image would bring: its user, working
// directory, environment and files. There are no images locally; a Runner
// that implements Imager says what its image would hold.
type Image struct {
	User, Group int64
	WorkingDir  string
	Env         []string        // under the container's own env
	Files       []podinit.Mount // read-only, e.g. the image's binary
}

// Imager is implemented by runners whose image has defaults.
type Imager interface {
	Image(c *Container) Image
}

// imageOf returns the image defaults of the container's runner.
func (p *Provider) imageOf(c *Container) Image {
	if r, ok := p.runners.Lookup(c.Spec.Image); ok {
		if im, ok := r.(Imager); ok {
			return im.Image(c)
		}
	}
	return Image{}
}

// sandboxUser is the pod's user: the first container's runAsUser, the
// pod's, the image's, else root. One pod has one user namespace.
func sandboxUser(pod *corev1.Pod, im Image) (uid, gid int64) {
	uid, gid = im.User, im.Group
	if sc := pod.Spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
	}
	if len(pod.Spec.Containers) > 0 {
		if sc := pod.Spec.Containers[0].SecurityContext; sc != nil {
			if sc.RunAsUser != nil {
				uid = *sc.RunAsUser
			}
			if sc.RunAsGroup != nil {
				gid = *sc.RunAsGroup
			}
		}
	}
	return uid, gid
}

// workingDir is where the container's processes start: the spec's, the
// image's, else /.
func workingDir(c corev1.Container, im Image) string {
	if c.WorkingDir != "" {
		return path.Clean(c.WorkingDir)
	}
	if im.WorkingDir != "" {
		return im.WorkingDir
	}
	return "/"
}

// startSandbox starts the pod's init and builds its filesystem view: the
// working directories and /tmp backed by the pod's folder, each volume, each
// image's files. It fills in every container's working directory and env.
func (r *podRun) startSandbox(ctx context.Context) (*podinit.Sandbox, error) {
	p := r.p
	if p.sandboxErr != nil {
		return nil, p.sandboxErr
	}
	defer func() { // left by a start that ends early
		r.mu.Lock()
		li := r.spare
		r.spare = nil
		r.mu.Unlock()
		if li != nil {
			li.kill()
		}
	}()
	var mounts []podinit.Mount
	add := func(m podinit.Mount) error {
		for _, o := range mounts {
			if o.Target == m.Target {
				if o.Source != m.Source || o.Tmpfs != m.Tmpfs {
					return fmt.Errorf("two containers mount different things at %s; the local node gives a pod one filesystem view", m.Target)
				}
				return nil
			}
		}
		mounts = append(mounts, m)
		return nil
	}
	hostDir := func(name string) (string, error) {
		d := filepath.Join(r.dir, name)
		return d, os.MkdirAll(d, 0o755)
	}
	vols := r.volumes // prepared when the pod was created
	var err error
	prep := r.prep
	uid := int64(prep.UID)
	for _, c := range r.containers {
		im := p.imageOf(&Container{Pod: r.pod, Spec: c.spec, PodIP: r.ip, Kubeconfig: p.kubeconfigForPods()})
		c.workDir = workingDir(c.spec, im)
		c.env = containerEnv(c.spec, im, uid)
		if !p.isolated {
			// Today's unconfined behaviour: the host's filesystem, a host folder as the working directory.
			if c.workDir, err = hostDir(c.spec.Name); err != nil {
				return nil, err
			}
			continue
		}
		if c.workDir != "/" {
			src, err := hostDir(filepath.Join("fs", c.workDir))
			if err != nil {
				return nil, err
			}
			if err := add(podinit.Mount{Source: src, Target: c.workDir}); err != nil {
				return nil, err
			}
		}
		for _, f := range im.Files {
			f.ReadOnly = true
			if err := add(f); err != nil {
				return nil, err
			}
		}
		vm, err := p.containerMounts(r.pod, c.spec, vols)
		if err != nil {
			return nil, err
		}
		for _, m := range vm {
			if err := add(m); err != nil {
				return nil, fmt.Errorf("container %s: %w", c.spec.Name, err)
			}
		}
	}
	cfg := podinit.Config{Prep: prep, Hostname: r.pod.Name, PodIP: r.ip, Mounts: mounts}
	if p.isolated {
		tmp, err := hostDir("tmp")
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(tmp, 0o1777); err != nil {
			return nil, err
		}
		cfg.Mounts = append(cfg.Mounts, podinit.Mount{Source: tmp, Target: "/tmp"})
		if uid == 0 {
			home, err := hostDir("home")
			if err != nil {
				return nil, err
			}
			cfg.Home = "/root"
			cfg.Mounts = append(cfg.Mounts, podinit.Mount{Source: home, Target: "/root"})
		}
		if cfg.Root, err = hostDir("root"); err != nil {
			return nil, err
		}
	}
	if p.net != nil {
		pn := p.podNet(r.ip)
		cfg.Net = &pn
	}
	specs := make([]corev1.Container, len(r.containers))
	for i, c := range r.containers {
		specs[i] = c.spec
	}
	sb, group, err := p.startInit(r, cfg, specs)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.group = group
	r.mu.Unlock()
	return sb, nil
}

// podPrep is what the pod's init is prepared for (podinit.Launch): the
// pod's user, the pids limit where that is an rlimit, and the warm role.
func (p *Provider) podPrep(pod *corev1.Pod) podinit.Prep {
	var uid, gid int64
	if len(pod.Spec.Containers) > 0 {
		c := pod.Spec.Containers[0]
		uid, gid = sandboxUser(pod, p.imageOf(&Container{Pod: pod, Spec: c, Kubeconfig: p.kubeconfigForPods()}))
	}
	prep := podinit.Prep{Isolated: p.isolated, UID: int(uid), GID: int(gid)}
	if p.isolated && len(pod.Spec.Containers) == 1 {
		// The built-in runtime server is the one warm role (see spare.go).
		if runner, ok := p.runners.Lookup(pod.Spec.Containers[0].Image); ok {
			if _, ok := runner.(runtimeRunner); ok {
				prep.Warm = podinit.RuntimeServerRole
			}
		}
	}
	if p.limits != nil && p.limits.rlim {
		prep.PidsLimit = int(p.limits.pids)
	}
	return prep
}

// containerEnv is the image's defaults (PATH, HOME) under the container's
// env, which virtual-kubelet has already resolved (fieldRef, configMap and
// secret refs). Nothing comes from the node's environment.
func containerEnv(c corev1.Container, im Image, uid int64) []string {
	home := "/"
	if uid == 0 {
		home = "/root"
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home}
	env = append(env, im.Env...)
	for _, e := range c.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	return dedupEnv(env)
}

// dedupEnv keeps the last value of each variable, in first-seen order.
func dedupEnv(env []string) []string {
	idx := map[string]int{}
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}
