package processnode

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// volumesDirName holds a pod's volumes in its folder. The underscore keeps
// it apart from the containers' folders: container names are DNS labels.
const volumesDirName = "_volumes"

// tmpfsPrefix marks an emptyDir of medium Memory in the map prepareVolumes
// returns: "tmpfs:<size limit in bytes>" instead of a host directory.
const tmpfsPrefix = "tmpfs:"

// claimBindTimeout bounds the wait for a pod's PersistentVolumeClaim to be
// bound (the scheduler normally binds it before the pod reaches the node).
var claimBindTimeout = 30 * time.Second

// prepareVolumes materialises the pod's volumes under podDir (mode 0700) and
// maps each volume name to its host directory: emptyDir, configMap, secret,
// downwardAPI and projected volumes are made there; a persistentVolumeClaim
// maps to its bound PersistentVolume's directory; an emptyDir of medium
// Memory maps to a tmpfs marker that containerMounts understands.
func (p *Provider) prepareVolumes(ctx context.Context, pod *corev1.Pod, podDir string) (map[string]string, error) {
	base := filepath.Join(podDir, volumesDirName)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(base, 0o700); err != nil {
		return nil, err
	}
	vols := make(map[string]string, len(pod.Spec.Volumes))
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(base, v.Name) // volume names are DNS labels (API validation)
		var err error
		switch {
		case v.EmptyDir != nil:
			if v.EmptyDir.Medium == corev1.StorageMediumMemory {
				var size int64
				if v.EmptyDir.SizeLimit != nil {
					size = v.EmptyDir.SizeLimit.Value()
				}
				vols[v.Name] = tmpfsPrefix + strconv.FormatInt(size, 10)
				continue
			}
			err = os.MkdirAll(dir, 0o777)
		case v.ConfigMap != nil:
			var files map[string]volumeFile
			if files, err = p.configMapFiles(ctx, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, v.ConfigMap.DefaultMode); err == nil {
				err = writeVolume(dir, files)
			}
		case v.Secret != nil:
			var files map[string]volumeFile
			if files, err = p.secretFiles(ctx, pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, v.Secret.DefaultMode); err == nil {
				err = writeVolume(dir, files)
			}
		case v.DownwardAPI != nil:
			var files map[string]volumeFile
			if files, err = p.downwardAPIFiles(ctx, pod, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode); err == nil {
				err = writeVolume(dir, files)
			}
		case v.Projected != nil:
			var files map[string]volumeFile
			if files, err = p.projectedFiles(ctx, pod, v.Projected); err == nil {
				err = writeVolume(dir, files)
			}
		case v.PersistentVolumeClaim != nil:
			dir, err = p.claimDir(ctx, pod.Namespace, v.PersistentVolumeClaim.ClaimName)
		case v.Ephemeral != nil:
			// kube-controller-manager's ephemeral volume controller makes the claim <pod>-<volume>.
			dir, err = p.claimDir(ctx, pod.Namespace, pod.Name+"-"+v.Name)
		default:
			err = fmt.Errorf("the local node supports emptyDir, configMap, secret, downwardAPI, projected, persistentVolumeClaim and ephemeral volumes only; use one of those, or run the pod on Kind")
		}
		if err != nil {
			return nil, fmt.Errorf("sandboxtest: pod %s/%s: volume %q: %w", pod.Namespace, pod.Name, v.Name, err)
		}
		vols[v.Name] = dir
	}
	return vols, nil
}

// containerMounts lists the container's volumeMounts as mounts of host
// paths, subPath resolved inside its volume and readOnly honoured.
// configMap, secret, downwardAPI and projected volumes are always read-only,
// as kubelet mounts them.
func (p *Provider) containerMounts(pod *corev1.Pod, c corev1.Container, vols map[string]string) ([]podinit.Mount, error) {
	var out []podinit.Mount
	for _, vm := range c.VolumeMounts {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("sandboxtest: pod %s/%s: container %s: volumeMount %q at %s: %s",
				pod.Namespace, pod.Name, c.Name, vm.Name, vm.MountPath, fmt.Sprintf(format, args...))
		}
		src, ok := vols[vm.Name]
		if !ok {
			return nil, fail("the pod has no volume of that name (or it was not prepared); add it to spec.volumes")
		}
		vol := podVolume(pod, vm.Name)
		m := podinit.Mount{
			Target:   filepath.Join("/", vm.MountPath),
			ReadOnly: vm.ReadOnly || (vol != nil && alwaysReadOnly(vol)),
		}
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = expandSubPathExpr(vm.SubPathExpr, c.Env)
		}
		if size, ok := strings.CutPrefix(src, tmpfsPrefix); ok {
			if sub != "" {
				return nil, fail("subPath %q on an emptyDir of medium Memory is not supported by the local node; mount the whole volume", sub)
			}
			m.Tmpfs = true
			m.SizeLimit, _ = strconv.ParseInt(size, 10, 64)
			out = append(out, m)
			continue
		}
		m.Source = src
		if sub != "" {
			resolved, err := resolveSubPath(src, sub)
			if err != nil {
				return nil, fail("%v", err)
			}
			m.Source = resolved
		}
		out = append(out, m)
	}
	return out, nil
}

func podVolume(pod *corev1.Pod, name string) *corev1.Volume {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	return nil
}

func alwaysReadOnly(v *corev1.Volume) bool {
	return v.ConfigMap != nil || v.Secret != nil || v.DownwardAPI != nil || v.Projected != nil ||
		(v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ReadOnly)
}

// expandSubPathExpr replaces $(VAR) with the container's env values, as kubelet does.
func expandSubPathExpr(expr string, env []corev1.EnvVar) string {
	vals := map[string]string{}
	for _, e := range env {
		vals[e.Name] = e.Value
	}
	var b strings.Builder
	for {
		i := strings.Index(expr, "$(")
		if i < 0 {
			break
		}
		j := strings.Index(expr[i:], ")")
		if j < 0 {
			break
		}
		b.WriteString(expr[:i])
		b.WriteString(vals[expr[i+2:i+j]])
		expr = expr[i+j+1:]
	}
	b.WriteString(expr)
	return b.String()
}

// resolveSubPath returns the host path of sub inside the volume directory
// root, creating missing directories as kubelet does. It refuses absolute
// paths, ".." and symlinks that lead out of the volume.
func resolveSubPath(root, sub string) (string, error) {
	if filepath.IsAbs(sub) {
		return "", fmt.Errorf("subPath %q must be a relative path inside the volume", sub)
	}
	parts := strings.Split(filepath.ToSlash(sub), "/")
	if slices.Contains(parts, "..") {
		return "", fmt.Errorf("subPath %q must not contain '..'", sub)
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	inside := func(p string) bool { return p == real || strings.HasPrefix(p, real+string(filepath.Separator)) }
	cur := real
	for i, part := range parts {
		if part == "" || part == "." {
			continue
		}
		next := filepath.Join(cur, part)
		fi, err := os.Lstat(next)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(next, 0o755); err != nil {
				return "", fmt.Errorf("creating subPath %q: %w", sub, err)
			}
		case err != nil:
			return "", err
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := filepath.EvalSymlinks(next)
			if err != nil {
				return "", fmt.Errorf("subPath %q: symlink %s is dangling or unreadable: %w", sub, strings.Join(parts[:i+1], "/"), err)
			}
			if !inside(target) {
				return "", fmt.Errorf("subPath %q escapes its volume: %s is a symlink to %s; point it inside the volume", sub, strings.Join(parts[:i+1], "/"), target)
			}
			next = target
		}
		if i < len(parts)-1 {
			if fi, err := os.Stat(next); err == nil && !fi.IsDir() {
				return "", fmt.Errorf("subPath %q: %s is not a directory", sub, strings.Join(parts[:i+1], "/"))
			}
		}
		cur = next
	}
	return cur, nil
}

// volumeFile is one file of a configMap, secret, downwardAPI or projected volume.
type volumeFile struct {
	data []byte
	mode os.FileMode
}

// writeVolume replaces dir with exactly files (paths relative to dir).
func writeVolume(dir string, files map[string]volumeFile) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		f := files[rel]
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(path, f.mode); err != nil { // WriteFile's mode is subject to the umask
			return err
		}
	}
	return nil
}

// fileMode is the item's mode, else the volume's defaultMode, else 0644.
func fileMode(item, def *int32) os.FileMode {
	switch {
	case item != nil:
		return os.FileMode(*item) & fs.ModePerm
	case def != nil:
		return os.FileMode(*def) & fs.ModePerm
	}
	return 0o644
}

// checkItemPath refuses item paths that would leave the volume (the API
// server validates them too; this guards against a lax one).
func checkItemPath(p string) error {
	if p == "" || filepath.IsAbs(p) || slices.Contains(strings.Split(filepath.ToSlash(p), "/"), "..") {
		return fmt.Errorf("item path %q must be a relative path without '..'", p)
	}
	return nil
}

// keyFiles turns key/value data into files: every key, or only items.
func keyFiles(what string, data map[string][]byte, items []corev1.KeyToPath, optional bool, def *int32, files map[string]volumeFile) error {
	if len(items) == 0 {
		for k, v := range data {
			files[k] = volumeFile{data: v, mode: fileMode(nil, def)}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return fmt.Errorf("%s has no key %q; add it or mark the volume optional", what, it.Key)
		}
		if err := checkItemPath(it.Path); err != nil {
			return err
		}
		files[it.Path] = volumeFile{data: v, mode: fileMode(it.Mode, def)}
	}
	return nil
}

func (p *Provider) configMapFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, def *int32) (map[string]volumeFile, error) {
	files := map[string]volumeFile{}
	return files, p.addConfigMap(ctx, ns, name, items, optional, def, files)
}

func (p *Provider) addConfigMap(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, def *int32, files map[string]volumeFile) error {
	opt := optional != nil && *optional
	cm, err := p.cfg.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && opt {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading ConfigMap %s/%s: %w", ns, name, err)
	}
	data := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	maps.Copy(data, cm.BinaryData)
	return keyFiles("ConfigMap "+ns+"/"+name, data, items, opt, def, files)
}

func (p *Provider) secretFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, def *int32) (map[string]volumeFile, error) {
	files := map[string]volumeFile{}
	return files, p.addSecret(ctx, ns, name, items, optional, def, files)
}

func (p *Provider) addSecret(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, def *int32, files map[string]volumeFile) error {
	opt := optional != nil && *optional
	s, err := p.cfg.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && opt {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Secret %s/%s: %w", ns, name, err)
	}
	return keyFiles("Secret "+ns+"/"+name, s.Data, items, opt, def, files)
}

func (p *Provider) downwardAPIFiles(ctx context.Context, pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, def *int32) (map[string]volumeFile, error) {
	files := map[string]volumeFile{}
	return files, p.addDownwardAPI(ctx, pod, items, def, files)
}

func (p *Provider) addDownwardAPI(ctx context.Context, pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, def *int32, files map[string]volumeFile) error {
	for _, it := range items {
		if err := checkItemPath(it.Path); err != nil {
			return err
		}
		var val string
		switch {
		case it.FieldRef != nil:
			var err error
			if val, err = podField(pod, it.FieldRef.FieldPath); err != nil {
				return err
			}
		case it.ResourceFieldRef != nil:
			var err error
			if val, err = p.resourceField(ctx, pod, it.ResourceFieldRef); err != nil {
				return err
			}
		default:
			return fmt.Errorf("downwardAPI item %q has neither fieldRef nor resourceFieldRef", it.Path)
		}
		files[it.Path] = volumeFile{data: []byte(val), mode: fileMode(it.Mode, def)}
	}
	return nil
}

// podField is a downwardAPI volume's fieldRef value, formatted as kubelet does.
func podField(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	return "", fmt.Errorf("downwardAPI fieldRef %q is not supported in volumes; use metadata.name, metadata.namespace, metadata.uid, metadata.labels or metadata.annotations", path)
}

// formatMap writes key="value" lines, sorted by key.
func formatMap(m map[string]string) string {
	var lines []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		lines = append(lines, k+"="+strconv.Quote(m[k]))
	}
	return strings.Join(lines, "\n")
}

// resourceField is a container's request or limit in units of the divisor,
// rounded up; an unset limit is the node's allocatable amount, as on kubelet.
func (p *Provider) resourceField(ctx context.Context, pod *corev1.Pod, ref *corev1.ResourceFieldSelector) (string, error) {
	var c *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == ref.ContainerName {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		return "", fmt.Errorf("downwardAPI resourceFieldRef names container %q, which the pod does not have", ref.ContainerName)
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("downwardAPI resourceFieldRef %q is not supported; use limits.<resource> or requests.<resource>", ref.Resource)
	}
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok && kind == "limits" {
		node, err := p.cfg.Client.CoreV1().Nodes().Get(ctx, p.cfg.Name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("reading node %s for the default of %s: %w", p.cfg.Name, ref.Resource, err)
		}
		q, ok = node.Status.Allocatable[corev1.ResourceName(name)]
	}
	if !ok {
		q = resource.Quantity{}
	}
	div := ref.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	// Milli-units keep cpu fractions exact; ceil as kubelet does.
	n, d := q.MilliValue(), div.MilliValue()
	return strconv.FormatInt((n+d-1)/d, 10), nil
}

// projectedFiles gathers a projected volume's sources, as kubelet does for
// the kube-api-access volume that kube-apiserver adds to every pod: a
// service account token, the cluster CA and the namespace.
func (p *Provider) projectedFiles(ctx context.Context, pod *corev1.Pod, v *corev1.ProjectedVolumeSource) (map[string]volumeFile, error) {
	files := map[string]volumeFile{}
	def := v.DefaultMode
	for _, src := range v.Sources {
		var err error
		switch {
		case src.ServiceAccountToken != nil:
			err = p.addToken(ctx, pod, src.ServiceAccountToken, def, files)
		case src.ConfigMap != nil:
			err = p.addConfigMap(ctx, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, def, files)
		case src.Secret != nil:
			err = p.addSecret(ctx, pod.Namespace, src.Secret.Name, src.Secret.Items, src.Secret.Optional, def, files)
		case src.DownwardAPI != nil:
			err = p.addDownwardAPI(ctx, pod, src.DownwardAPI.Items, def, files)
		default:
			err = errors.New("projected sources other than serviceAccountToken, configMap, secret and downwardAPI are not supported by the local node")
		}
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}

// addToken asks kube-apiserver for a token of the pod's service account,
// bound to the pod (TokenRequest), as kubelet does. The token is not
// refreshed: local pods live far shorter than its expiry.
func (p *Provider) addToken(ctx context.Context, pod *corev1.Pod, src *corev1.ServiceAccountTokenProjection, def *int32, files map[string]volumeFile) error {
	if err := checkItemPath(src.Path); err != nil {
		return err
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: src.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	tr, err := p.cfg.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", pod.Namespace, sa, err)
	}
	files[src.Path] = volumeFile{data: []byte(tr.Status.Token), mode: fileMode(nil, def)}
	return nil
}

// claimDir waits (bounded) for the claim to be bound and returns its
// PersistentVolume's host directory.
func (p *Provider) claimDir(ctx context.Context, ns, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, claimBindTimeout)
	defer cancel()
	last := "not found"
	for {
		dir, state, err := p.boundDir(ctx, ns, name)
		if err != nil || dir != "" {
			return dir, err
		}
		last = state
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("PersistentVolumeClaim %s/%s is not bound after %s (last state: %s); see its events: kubectl describe pvc -n %s %s",
				ns, name, claimBindTimeout, last, ns, name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// boundDir is the claim's volume directory once bound; otherwise "" and the state seen.
func (p *Provider) boundDir(ctx context.Context, ns, name string) (dir, state string, err error) {
	pvc, err := p.cfg.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", "not found", nil
	}
	if err != nil {
		return "", err.Error(), nil
	}
	if pvc.DeletionTimestamp != nil {
		return "", "", fmt.Errorf("PersistentVolumeClaim %s/%s is being deleted", ns, name)
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return "", fmt.Sprintf("phase %s", pvc.Status.Phase), nil
	}
	pv, err := p.cfg.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Sprintf("phase Bound, PersistentVolume %s: %v", pvc.Spec.VolumeName, err), nil
	}
	switch {
	case pv.Spec.Local != nil:
		dir = pv.Spec.Local.Path
	case pv.Spec.HostPath != nil:
		dir = pv.Spec.HostPath.Path
	default:
		return "", "", fmt.Errorf("PersistentVolumeClaim %s/%s is bound to PersistentVolume %s, which is neither a local nor a hostPath volume; the local node mounts only directories of this machine", ns, name, pv.Name)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", "", fmt.Errorf("PersistentVolumeClaim %s/%s is bound to PersistentVolume %s, whose directory %s is missing on this machine", ns, name, pv.Name, dir)
	}
	return dir, "", nil
}
