package processnode

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// readTree maps every regular file under dir to its content and mode.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = fi.Mode().Perm().String() + " " + string(data)
		return nil
	})
	assert.NilError(t, err)
	return out
}

func i32(v int32) *int32 { return &v }

func TestPrepareVolumesMaterialisesAPIObjects(t *testing.T) {
	h := newHarness(t, registryWith(fakeImage, newFakeRunner()))
	ctx := context.Background()
	_, err := h.client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "default"},
		Data:       map[string]string{"a.conf": "alpha", "b.conf": "beta"},
		BinaryData: map[string][]byte{"bin": {0, 1, 2}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	_, err = h.client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: "default"},
		Data:       map[string]string{"ca.crt": "CA PEM"},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	_, err = h.client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "default"},
		Data:       map[string][]byte{"user": []byte("ann"), "password": []byte("s3cret")},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	var tokenReq *authenticationv1.TokenRequest
	var tokenSA string
	h.client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		tokenReq = a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest)
		tokenSA = a.(k8stesting.CreateActionImpl).Name
		return true, &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{Token: "the-token"}}, nil
	})

	pod := testPod(corev1.RestartPolicyAlways)
	pod.Labels = map[string]string{"app": "demo", "tier": `a"b`}
	pod.Annotations = map[string]string{"note": "hi"}
	pod.Spec.ServiceAccountName = "runner"
	pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("16Mi"))}}},
		{Name: "all-keys", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, DefaultMode: i32(0o640)}}},
		{Name: "some-keys", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "settings"},
			Items:                []corev1.KeyToPath{{Key: "b.conf", Path: "conf/b", Mode: i32(0o600)}}}}},
		{Name: "missing-optional", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Optional: ptr(true)}}},
		{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: "creds", DefaultMode: i32(0o400), Items: []corev1.KeyToPath{{Key: "password", Path: "pw"}}}}},
		{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
			{Path: "ns", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
			{Path: "uid", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}},
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
			{Path: "mem", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "main", Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}},
		}}}},
		// What kube-apiserver's ServiceAccount admission adds to every pod.
		{Name: "kube-api-access-x1", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			DefaultMode: i32(0o644),
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr(int64(3607))}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
					Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
					{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
			}}}},
	}
	podDir := t.TempDir()
	vols, err := h.p.prepareVolumes(ctx, pod, podDir)
	assert.NilError(t, err)

	base := filepath.Join(podDir, volumesDirName)
	fi, err := os.Stat(base)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o700)))
	assert.Check(t, is.Equal(vols["shm"], tmpfsPrefix+"16777216"))
	assert.Check(t, is.Equal(vols["scratch"], filepath.Join(base, "scratch")))
	assert.Check(t, is.DeepEqual(readTree(t, vols["scratch"]), map[string]string{}))
	assert.Check(t, is.DeepEqual(readTree(t, vols["all-keys"]), map[string]string{
		"a.conf": "-rw-r----- alpha", "b.conf": "-rw-r----- beta", "bin": "-rw-r----- \x00\x01\x02",
	}))
	assert.Check(t, is.DeepEqual(readTree(t, vols["some-keys"]), map[string]string{"conf/b": "-rw------- beta"}))
	assert.Check(t, is.DeepEqual(readTree(t, vols["missing-optional"]), map[string]string{}))
	assert.Check(t, is.DeepEqual(readTree(t, vols["secret"]), map[string]string{"pw": "-r-------- s3cret"}))
	assert.Check(t, is.DeepEqual(readTree(t, vols["podinfo"]), map[string]string{
		"name": "-rw-r--r-- " + pod.Name, "ns": "-rw-r--r-- default", "uid": "-rw-r--r-- " + string(pod.UID),
		"labels": "-rw-r--r-- app=\"demo\"\ntier=\"a\\\"b\"", "annotations": "-rw-r--r-- note=\"hi\"", "mem": "-rw-r--r-- 64",
	}))
	assert.Check(t, is.DeepEqual(readTree(t, vols["kube-api-access-x1"]), map[string]string{
		"token": "-rw-r--r-- the-token", "ca.crt": "-rw-r--r-- CA PEM", "namespace": "-rw-r--r-- default",
	}))
	assert.Assert(t, tokenReq != nil, "no TokenRequest was made")
	assert.Check(t, is.DeepEqual(tokenReq.Spec.BoundObjectRef, &authenticationv1.BoundObjectReference{
		Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}))
	assert.Check(t, is.Equal(*tokenReq.Spec.ExpirationSeconds, int64(3607)))
	assert.Check(t, is.Equal(tokenSA, "runner"), "token for the pod's ServiceAccount")

	// Preparing again (a restarted node) gives the same result and drops stale files.
	assert.NilError(t, os.WriteFile(filepath.Join(vols["all-keys"], "stale"), []byte("x"), 0o644))
	again, err := h.p.prepareVolumes(ctx, pod, podDir)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(again, vols))
	assert.Check(t, is.Len(readTree(t, vols["all-keys"]), 3))
}

func TestPrepareVolumesErrorsNameTheCause(t *testing.T) {
	h := newHarness(t, registryWith(fakeImage, newFakeRunner()))
	defer func(d time.Duration) { claimBindTimeout = d }(claimBindTimeout)
	claimBindTimeout = 300 * time.Millisecond
	_, err := h.client.CoreV1().PersistentVolumeClaims("default").Create(context.Background(), &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default"},
		Status:     corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	for _, tc := range []struct {
		name string
		src  corev1.VolumeSource
		want string
	}{
		{"missing configMap", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}}},
			`volume "v": reading ConfigMap default/absent`},
		{"missing secret", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "absent"}},
			`volume "v": reading Secret default/absent`},
		{"pending claim", corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}},
			`PersistentVolumeClaim default/data is not bound after 300ms (last state: phase Pending)`},
		{"hostPath", corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}},
			`the local node supports emptyDir, configMap`},
		{"unsupported fieldRef", corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "ip", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}}},
			`downwardAPI fieldRef "status.podIP" is not supported in volumes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod(corev1.RestartPolicyAlways)
			pod.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: tc.src}}
			_, err := h.p.prepareVolumes(context.Background(), pod, t.TempDir())
			assert.ErrorContains(t, err, tc.want)
			assert.ErrorContains(t, err, "pod default/"+pod.Name)
		})
	}
}

// A pod whose volumes cannot be prepared fails at once with the reason, in
// its status and as an event, instead of hanging in ContainerCreating.
func TestCreatePodReportsFailedMount(t *testing.T) {
	run := newFakeRunner()
	h := newHarness(t, registryWith(fakeImage, run))
	pod := testPod(corev1.RestartPolicyAlways)
	pod.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}}}}}
	h.create(pod)
	got := h.waitPod(pod, "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	assert.Check(t, is.Equal(got.Status.Reason, "FailedMount"))
	assert.Check(t, is.Contains(got.Status.Message, "ConfigMap default/absent"))
	assert.Check(t, is.Equal(run.count(), 0), "a container started although its volume failed")
	assert.Check(t, hasEventPrefix(h, "Warning FailedMount sandboxtest: pod default/"+pod.Name), "no FailedMount event")
}

func TestContainerMounts(t *testing.T) {
	h := newHarness(t, registryWith(fakeImage, newFakeRunner()))
	root := t.TempDir()
	data := filepath.Join(root, "data")
	cfg := filepath.Join(root, "cfg")
	outside := filepath.Join(root, "outside")
	for _, d := range []string{data, cfg, outside, filepath.Join(data, "real")} {
		assert.NilError(t, os.MkdirAll(d, 0o755))
	}
	assert.NilError(t, os.WriteFile(filepath.Join(cfg, "app.conf"), []byte("x"), 0o644))
	assert.NilError(t, os.Symlink("real", filepath.Join(data, "inside-link")))
	assert.NilError(t, os.Symlink(outside, filepath.Join(data, "escape-abs")))
	assert.NilError(t, os.Symlink("../outside", filepath.Join(data, "escape-rel")))
	assert.NilError(t, os.Symlink("/nonexistent/x", filepath.Join(data, "dangling")))

	pod := testPod(corev1.RestartPolicyAlways)
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}},
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
		{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
	}
	vols := map[string]string{"data": data, "cfg": cfg, "shm": tmpfsPrefix + "1048576"}
	mounts := func(vms ...corev1.VolumeMount) ([]podinit.Mount, error) {
		c := corev1.Container{Name: "main", VolumeMounts: vms, Env: []corev1.EnvVar{{Name: "POD", Value: "p1"}}}
		return h.p.containerMounts(pod, c, vols)
	}

	got, err := mounts(
		corev1.VolumeMount{Name: "data", MountPath: "/workspace"},
		corev1.VolumeMount{Name: "data", MountPath: "/ro", ReadOnly: true},
		corev1.VolumeMount{Name: "data", MountPath: "/sub", SubPath: "new/dir"},
		corev1.VolumeMount{Name: "data", MountPath: "/link", SubPath: "inside-link"},
		corev1.VolumeMount{Name: "data", MountPath: "/expr", SubPathExpr: "per-pod/$(POD)"},
		corev1.VolumeMount{Name: "cfg", MountPath: "/etc/app.conf", SubPath: "app.conf"},
		corev1.VolumeMount{Name: "shm", MountPath: "/dev/shm"},
	)
	assert.NilError(t, err)
	realData, _ := filepath.EvalSymlinks(data)
	realCfg, _ := filepath.EvalSymlinks(cfg)
	want := []podinit.Mount{
		{Source: data, Target: "/workspace"},
		{Source: data, Target: "/ro", ReadOnly: true},
		{Source: filepath.Join(realData, "new/dir"), Target: "/sub"},
		{Source: filepath.Join(realData, "real"), Target: "/link"},
		{Source: filepath.Join(realData, "per-pod/p1"), Target: "/expr"},
		{Source: filepath.Join(realCfg, "app.conf"), Target: "/etc/app.conf", ReadOnly: true}, // configMaps are always read-only
		{Target: "/dev/shm", Tmpfs: true, SizeLimit: 1 << 20},
	}
	assert.Check(t, cmp.Equal(got, want), cmp.Diff(want, got))
	fi, err := os.Stat(filepath.Join(data, "new/dir"))
	assert.Check(t, err == nil && fi.IsDir(), "the missing subPath was not created")

	for _, tc := range []struct {
		vm   corev1.VolumeMount
		want string
	}{
		{corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "../outside"}, `subPath "../outside" must not contain '..'`},
		{corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "a/../../outside"}, `must not contain '..'`},
		{corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "/etc"}, `must be a relative path`},
		{corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "escape-abs"}, `subPath "escape-abs" escapes its volume: escape-abs is a symlink to ` + outside},
		{corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "escape-rel/sub"}, `escapes its volume: escape-rel is a symlink`},
		{corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "dangling"}, `symlink dangling is dangling`},
		{corev1.VolumeMount{Name: "shm", MountPath: "/x", SubPath: "a"}, `emptyDir of medium Memory`},
		{corev1.VolumeMount{Name: "nope", MountPath: "/x"}, `the pod has no volume of that name`},
	} {
		_, err := mounts(tc.vm)
		assert.Check(t, is.ErrorContains(err, tc.want), "subPath %q", tc.vm.SubPath)
		if err != nil {
			assert.Check(t, strings.Contains(err.Error(), `container main: volumeMount "`+tc.vm.Name+`" at /x`), err.Error())
		}
	}
	entries, _ := os.ReadDir(outside)
	assert.Check(t, is.Len(entries, 0), "something was created outside the volume")
}
