package localcluster_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	asclient "sigs.k8s.io/agent-sandbox/clients/k8s/clientset/versioned"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
	"github.com/agentsandbox/go-sandboxtest/internal/processnode"
)

// upstreamManifest reads a manifest of the upstream Python client from the
// module cache and fills its ${...} placeholders.
func upstreamManifest(t testing.TB, file string, vars map[string]string, into any) {
	t.Helper()
	dir, err := localcluster.ModuleDir(context.Background(), "sigs.k8s.io/agent-sandbox", localcluster.AgentSandboxVersion)
	assert.NilError(t, err)
	data, err := os.ReadFile(filepath.Join(dir, "clients/python/agentic-sandbox-client", file))
	assert.NilError(t, err)
	text := os.Expand(string(data), func(k string) string {
		v, ok := vars[k]
		assert.Assert(t, ok, "%s: no value for placeholder ${%s}", file, k)
		return v
	})
	assert.NilError(t, yaml.UnmarshalStrict([]byte(text), into), file)
}

// TestVolumes runs upstream's python-sandbox-template.yaml, whose workspace
// volumeClaimTemplate needs the default StorageClass and its provisioner,
// and the other volume kinds of a pod, on one local cluster.
func TestVolumes(t *testing.T) {
	ctx := context.Background()
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: t.TempDir(), Log: testWriter{t}}, nil)
	assert.NilError(t, err)
	t.Cleanup(func() { c.Stop() })
	e := &env{c: c,
		cs:  kubernetes.NewForConfigOrDie(c.RESTConfig),
		as:  asclient.NewForConfigOrDie(c.RESTConfig),
		ext: extclient.NewForConfigOrDie(c.RESTConfig),
	}

	t.Run("default StorageClass", func(t *testing.T) {
		sc, err := e.cs.StorageV1().StorageClasses().Get(ctx, "standard", metav1.GetOptions{})
		assert.NilError(t, err)
		assert.Check(t, is.Equal(sc.Annotations["storageclass.kubernetes.io/is-default-class"], "true"))
		assert.Check(t, is.Equal(*sc.VolumeBindingMode, storagev1.VolumeBindingWaitForFirstConsumer))
		assert.Check(t, is.Equal(*sc.ReclaimPolicy, corev1.PersistentVolumeReclaimDelete))
		assert.Check(t, is.Equal(sc.Provisioner, "sandboxtest.io/local-dir"))
	})

	var tmpl extv1beta1.SandboxTemplate
	upstreamManifest(t, "python-sandbox-template.yaml", map[string]string{
		"SANDBOX_TEMPLATE_NAME": "python-sandbox-template", "SANDBOX_NAMESPACE": ns}, &tmpl)
	assert.Assert(t, is.Len(tmpl.Spec.VolumeClaimTemplates, 1)) // the point of this test
	_, err = e.ext.ExtensionsV1beta1().SandboxTemplates(ns).Create(ctx, &tmpl, metav1.CreateOptions{})
	assert.NilError(t, err)
	for name, replicas := range map[string]int32{"cold": 0, "warm": 1} {
		var pool extv1beta1.SandboxWarmPool
		upstreamManifest(t, "python-sandbox-warmpool.yaml", map[string]string{
			"SANDBOX_WARMPOOL_NAME": name, "SANDBOX_TEMPLATE_NAME": tmpl.Name, "SANDBOX_NAMESPACE": ns}, &pool)
		pool.Spec.Replicas = &replicas
		_, err = e.ext.ExtensionsV1beta1().SandboxWarmPools(ns).Create(ctx, &pool, metav1.CreateOptions{})
		assert.NilError(t, err)
	}

	// Upstream's template declares the workspace volume but mounts it in no
	// container; this copy of it mounts it, so that the code under test can
	// use it.
	mounted := tmpl.DeepCopy()
	mounted.Name = "workspace-mounted"
	mounted.Spec.PodTemplate.Spec.Containers[0].VolumeMounts = append(mounted.Spec.PodTemplate.Spec.Containers[0].VolumeMounts,
		corev1.VolumeMount{Name: "workspace", MountPath: "/workspace"})
	_, err = e.ext.ExtensionsV1beta1().SandboxTemplates(ns).Create(ctx, mounted, metav1.CreateOptions{})
	assert.NilError(t, err)
	var mountedPool extv1beta1.SandboxWarmPool
	upstreamManifest(t, "python-sandbox-warmpool.yaml", map[string]string{
		"SANDBOX_WARMPOOL_NAME": "mounted", "SANDBOX_TEMPLATE_NAME": mounted.Name, "SANDBOX_NAMESPACE": ns}, &mountedPool)
	mountedPool.Spec.Replicas = ptr(int32(1))
	_, err = e.ext.ExtensionsV1beta1().SandboxWarmPools(ns).Create(ctx, &mountedPool, metav1.CreateOptions{})
	assert.NilError(t, err)

	t.Run("upstream template, cold claim", func(t *testing.T) {
		claim := e.claim(t, "cold")
		pod := e.readyPod(t, claim)
		pvc, pv := e.checkWorkspace(t, claim, pod)

		// The volume outlives its pod: the Sandbox's next pod gets the same one.
		assert.NilError(t, os.WriteFile(filepath.Join(pv.Spec.Local.Path, "kept"), []byte("data"), 0o600))
		assert.NilError(t, e.cs.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}))
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			p := e.podOf(claim)
			if p == nil || p.UID == pod.UID || p.Status.Phase != corev1.PodRunning {
				return poll.Continue("waiting for a new running pod for claim %s", claim)
			}
			return poll.Success()
		}, poll.WithTimeout(60*time.Second), poll.WithDelay(50*time.Millisecond))
		pvc2, pv2 := e.checkWorkspace(t, claim, e.readyPod(t, claim))
		assert.Check(t, is.Equal(pvc2.UID, pvc.UID))
		assert.Check(t, is.Equal(pv2.Name, pv.Name))
		data, err := os.ReadFile(filepath.Join(pv.Spec.Local.Path, "kept"))
		assert.Check(t, err)
		assert.Check(t, is.Equal(string(data), "data"))

		e.deleteClaimAndVolume(t, claim, pvc, pv)
	})

	t.Run("upstream template, warm pool", func(t *testing.T) {
		e.waitWarm(t, "warm")
		claim := e.claim(t, "warm")
		pod := e.readyPod(t, claim)
		pvc, pv := e.checkWorkspace(t, claim, pod)
		e.deleteClaimAndVolume(t, claim, pvc, pv)
	})

	// From inside the sandbox: a file written in the workspace volume is in
	// the PV, and is still there after the container's main process (the
	// runtime server) is killed and restarted under restartPolicy OnFailure.
	t.Run("workspace data survives a container restart, seen from inside", func(t *testing.T) {
		e.waitWarm(t, "mounted")
		claim := e.claim(t, "mounted")
		pod := e.readyPod(t, claim)
		pvc, pv := e.checkWorkspace(t, claim, pod)
		var mountPath string
		for _, vm := range pod.Spec.Containers[0].VolumeMounts {
			if vm.Name == "workspace" {
				mountPath = vm.MountPath
			}
		}
		assert.Assert(t, mountPath != "", "the pod mounts no workspace volume: %+v", pod.Spec.Containers[0].VolumeMounts)
		file := filepath.Join(mountPath, "kept")
		url := fmt.Sprintf("http://127.0.0.1:%d", e.portForward(t, pod.Name, 8888))
		out := execute(t, url+"/execute", nil, "sh -c 'echo kept > "+file+" && cat "+file+"'")
		assert.Equal(t, out.Stdout, "kept\n", out.Stderr)
		data, err := os.ReadFile(filepath.Join(pv.Spec.Local.Path, "kept"))
		assert.NilError(t, err, "the file written in %s is not in PV %s", mountPath, pv.Name)
		assert.Check(t, is.Equal(string(data), "kept\n"))

		// A command's parent is the runtime server; SIGKILL makes it fail.
		out = execute(t, url+"/execute", nil, "sh -c 'cat /proc/$PPID/cmdline'")
		assert.Assert(t, is.Contains(out.Stdout, "sandboxtest-runtime-server"), "the command's parent: %q %s", out.Stdout, out.Stderr)
		before := pod.Status.ContainerStatuses[0].RestartCount
		killRuntimeServer(t, url)
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			p, err := e.cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				return poll.Error(err)
			}
			assert.Assert(t, p.UID == pod.UID, "the pod was replaced, not its container restarted")
			st := p.Status.ContainerStatuses[0]
			if st.RestartCount <= before || !st.Ready {
				return poll.Continue("container %s: %d restarts, ready %v, state %+v", st.Name, st.RestartCount, st.Ready, st.State)
			}
			term := st.LastTerminationState.Terminated
			assert.Assert(t, term != nil, "no last termination state after a restart")
			assert.Check(t, is.Equal(term.ExitCode, int32(128+9)))
			t.Logf("container %s restarted (%d restarts, last exit %d, %s) in the same pod %s", st.Name, st.RestartCount, term.ExitCode, term.Reason, p.Name)
			return poll.Success()
		}, poll.WithTimeout(60*time.Second), poll.WithDelay(50*time.Millisecond))

		url = fmt.Sprintf("http://127.0.0.1:%d", e.portForward(t, pod.Name, 8888))
		out = execute(t, url+"/execute", nil, "cat "+file)
		assert.Check(t, is.Equal(out.Stdout, "kept\n"), "after the restart: %s", out.Stderr)
		e.deleteClaimAndVolume(t, claim, pvc, pv)
	})

	t.Run("claim with volumeClaimTemplates", func(t *testing.T) {
		cl := newClaim("cold")
		cl.Spec.VolumeClaimTemplates = []sandboxv1beta1.PersistentVolumeClaimTemplate{{
			EmbeddedObjectMetadata: sandboxv1beta1.EmbeddedObjectMetadata{Name: "scratch"},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Mi")}},
			},
		}}
		created, err := e.ext.ExtensionsV1beta1().SandboxClaims(ns).Create(ctx, cl, metav1.CreateOptions{})
		assert.NilError(t, err)
		pod := e.readyPod(t, created.Name)
		pvc, err := e.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "scratch-"+pod.Name, metav1.GetOptions{})
		assert.NilError(t, err)
		assert.Check(t, is.Equal(pvc.Status.Phase, corev1.ClaimBound))
		pv, err := e.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		assert.NilError(t, err)
		size := pv.Spec.Capacity[corev1.ResourceStorage]
		assert.Check(t, is.Equal(size.String(), "10Mi"))
		e.deleteClaimAndVolume(t, created.Name, pvc, pv)
	})

	// Sandbox pods have no service account token unless the template asks
	// (the controller defaults automountServiceAccountToken to false); a
	// plain pod gets kube-apiserver's kube-api-access projected volume.
	t.Run("configMap, secret, downwardAPI, emptyDir and the service account token", func(t *testing.T) {
		_, err := e.cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "app-config"}, Data: map[string]string{"app.conf": "debug=1"}}, metav1.CreateOptions{})
		assert.NilError(t, err)
		_, err = e.cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "app-secret"}, StringData: map[string]string{"token": "t0ken"}}, metav1.CreateOptions{})
		assert.NilError(t, err)
		pod := volumePod("with-volumes", []corev1.Volume{
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}},
			{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "app-secret"}}},
			{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}},
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		})
		pod, err = e.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		assert.NilError(t, err)
		t.Cleanup(func() { _ = e.cs.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}) })
		poll.WaitOn(t, e.podPhase(pod.Name, corev1.PodRunning), poll.WithTimeout(30*time.Second), poll.WithDelay(20*time.Millisecond))
		dir := e.podVolumesDir(t, pod.Name)
		read := func(rel string) string {
			data, err := os.ReadFile(filepath.Join(dir, rel))
			assert.Check(t, err)
			return string(data)
		}
		assert.Check(t, is.Equal(read("cfg/app.conf"), "debug=1"))
		assert.Check(t, is.Equal(read("sec/token"), "t0ken"))
		assert.Check(t, is.Equal(read("info/labels"), `app="volumes-test"`))
		fi, err := os.Stat(filepath.Join(dir, "scratch"))
		assert.Check(t, err == nil && fi.IsDir(), "no emptyDir directory: %v", err)
		e.checkServiceAccountToken(t, pod)
	})

	t.Run("a missing configMap fails the pod with FailedMount", func(t *testing.T) {
		pod := volumePod("missing-config", []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}}}}})
		pod, err := e.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		assert.NilError(t, err)
		t.Cleanup(func() { _ = e.cs.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}) })
		poll.WaitOn(t, e.podPhase(pod.Name, corev1.PodFailed), poll.WithTimeout(30*time.Second), poll.WithDelay(20*time.Millisecond))
		got, err := e.cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		assert.NilError(t, err)
		assert.Check(t, is.Equal(got.Status.Reason, "FailedMount"))
		assert.Check(t, is.Contains(got.Status.Message, `volume "cfg": reading ConfigMap default/absent`))
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			evs, err := e.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name})
			if err != nil {
				return poll.Error(err)
			}
			for _, ev := range evs.Items {
				if ev.Reason == "FailedMount" && strings.Contains(ev.Message, "ConfigMap default/absent") {
					return poll.Success()
				}
			}
			return poll.Continue("no FailedMount event for pod %s among %d", pod.Name, len(evs.Items))
		}, poll.WithTimeout(10*time.Second), poll.WithDelay(50*time.Millisecond))
	})
}

// waitWarm waits for the warm pool to have a ready sandbox.
func (e *env) waitWarm(t *testing.T, pool string) {
	t.Helper()
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		p, err := e.ext.ExtensionsV1beta1().SandboxWarmPools(ns).Get(context.Background(), pool, metav1.GetOptions{})
		if err != nil {
			return poll.Error(err)
		}
		if p.Status.ReadyReplicas < 1 {
			return poll.Continue("warm pool %s: %d of 1 sandboxes ready", pool, p.Status.ReadyReplicas)
		}
		return poll.Success()
	}, poll.WithTimeout(60*time.Second), poll.WithDelay(50*time.Millisecond))
}

// killRuntimeServer has a command SIGKILL its parent, the runtime server;
// the request dies with it.
func killRuntimeServer(t *testing.T, url string) {
	t.Helper()
	body := strings.NewReader(`{"command": "sh -c 'kill -KILL $PPID; sleep 5'"}`)
	resp, err := http.Post(url+"/execute", "application/json", body)
	if err == nil {
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("the runtime server answered after being killed: %s %s", resp.Status, data)
	}
}

func volumePod(name string, vols []corev1.Volume) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "volumes-test"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "main", Image: runtimeImage}},
			Volumes:    vols,
		},
	}
}

func (e *env) podPhase(name string, phase corev1.PodPhase) poll.Check {
	return func(poll.LogT) poll.Result {
		p, err := e.cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return poll.Continue("pod %s: %v", name, err)
		}
		if p.Status.Phase != phase {
			return poll.Continue("pod %s is %s (%s %s), waiting for %s", name, p.Status.Phase, p.Status.Reason, p.Status.Message, phase)
		}
		return poll.Success()
	}
}

// podVolumesDir is where the node prepared the pod's volumes.
func (e *env) podVolumesDir(t *testing.T, pod string) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(e.c.Dir, "node", "pods", ns+"_"+pod+"_*", "_volumes"))
	assert.NilError(t, err)
	assert.Assert(t, is.Len(dirs, 1), "volumes folder of pod %s", pod)
	return dirs[0]
}

// checkWorkspace checks the claim's workspace PVC and its PV: bound to each
// other, provisioned on the node, backed by a private directory.
func (e *env) checkWorkspace(t *testing.T, claim string, pod *corev1.Pod) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume) {
	t.Helper()
	ctx := context.Background()
	pvcName := "workspace-" + e.sandboxName(t, claim)
	var claimName string
	for _, v := range pod.Spec.Volumes {
		if v.Name == "workspace" && v.PersistentVolumeClaim != nil {
			claimName = v.PersistentVolumeClaim.ClaimName
		}
	}
	assert.Check(t, is.Equal(claimName, pvcName), "the pod's workspace volume")
	pvc, err := e.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, pvcName, metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(pvc.Status.Phase, corev1.ClaimBound))
	assert.Check(t, is.Equal(*pvc.Spec.StorageClassName, "standard"), "the default class is filled in")
	assert.Check(t, is.Equal(pvc.Annotations["volume.kubernetes.io/selected-node"], processnode.DefaultName))
	assert.Check(t, is.Len(pvc.OwnerReferences, 1))
	pv, err := e.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(pv.Status.Phase, corev1.VolumeBound))
	assert.Check(t, is.Equal(pv.Spec.ClaimRef.UID, pvc.UID))
	assert.Check(t, is.Equal(pv.Spec.PersistentVolumeReclaimPolicy, corev1.PersistentVolumeReclaimDelete))
	size := pv.Spec.Capacity[corev1.ResourceStorage]
	assert.Check(t, is.Equal(size.String(), "1Gi"))
	assert.Assert(t, pv.Spec.Local != nil, "PV %s has no local source: %+v", pv.Name, pv.Spec.PersistentVolumeSource)
	assert.Check(t, is.Equal(filepath.Dir(pv.Spec.Local.Path), filepath.Join(e.c.Dir, "volumes")))
	fi, err := os.Stat(pv.Spec.Local.Path)
	assert.NilError(t, err)
	assert.Check(t, fi.IsDir())
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o700)))
	return pvc, pv
}

// checkServiceAccountToken authenticates with the token the node put in the
// pod's kube-api-access volume.
func (e *env) checkServiceAccountToken(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(e.podVolumesDir(t, pod.Name), "kube-api-access-*"))
	assert.NilError(t, err)
	assert.Assert(t, is.Len(files, 1), "kube-api-access volume of pod %s", pod.Name)
	token, err := os.ReadFile(filepath.Join(files[0], "token"))
	assert.NilError(t, err)
	ca, err := os.ReadFile(filepath.Join(files[0], "ca.crt"))
	assert.NilError(t, err)
	nsFile, err := os.ReadFile(filepath.Join(files[0], "namespace"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(nsFile), ns))
	cs, err := kubernetes.NewForConfig(&rest.Config{
		Host: e.c.RESTConfig.Host, BearerToken: string(token), TLSClientConfig: rest.TLSClientConfig{CAData: ca},
	})
	assert.NilError(t, err)
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(r.Status.UserInfo.Username, "system:serviceaccount:"+ns+":default"))
	assert.Check(t, is.DeepEqual(r.Status.UserInfo.Extra["authentication.kubernetes.io/pod-name"], authenticationv1.ExtraValue{pod.Name}))
}

// deleteClaimAndVolume deletes the claim and waits for its PVC, PV and the
// PV's directory to go.
func (e *env) deleteClaimAndVolume(t *testing.T, claim string, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	assert.NilError(t, e.ext.ExtensionsV1beta1().SandboxClaims(ns).Delete(ctx, claim, metav1.DeleteOptions{}))
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if p, err := e.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, pvc.Name, metav1.GetOptions{}); err == nil {
			return poll.Continue("PVC %s still there (%v, finalizers %v)", pvc.Name, p.Status.Phase, p.Finalizers)
		} else if !apierrors.IsNotFound(err) {
			return poll.Continue("PVC %s: %v", pvc.Name, err)
		}
		if v, err := e.cs.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{}); err == nil {
			return poll.Continue("PV %s still there (%v)", pv.Name, v.Status.Phase)
		} else if !apierrors.IsNotFound(err) {
			return poll.Continue("PV %s: %v", pv.Name, err)
		}
		if _, err := os.Stat(pv.Spec.Local.Path); !os.IsNotExist(err) {
			return poll.Continue("directory %s of PV %s still there (%v)", pv.Spec.Local.Path, pv.Name, err)
		}
		return poll.Success()
	}, poll.WithTimeout(60*time.Second), poll.WithDelay(50*time.Millisecond))
	t.Logf("PVC %s, PV %s and its directory gone %s after the claim was deleted", pvc.Name, pv.Name, time.Since(start).Round(time.Millisecond))
}

// BenchmarkColdClaimReadyUpstreamTemplate measures SandboxClaim creation to
// Ready=True for upstream's python-sandbox-template.yaml on a cold pool: each
// claim's workspace PVC is provisioned and bound on the way (the scheduler
// polls the binding once a second):
// go test -bench UpstreamTemplate -benchtime 10x ./internal/localcluster
func BenchmarkColdClaimReadyUpstreamTemplate(b *testing.B) {
	var tmpl extv1beta1.SandboxTemplate
	upstreamManifest(b, "python-sandbox-template.yaml", map[string]string{"SANDBOX_TEMPLATE_NAME": "bench", "SANDBOX_NAMESPACE": ns}, &tmpl)
	var pool extv1beta1.SandboxWarmPool
	upstreamManifest(b, "python-sandbox-warmpool.yaml", map[string]string{
		"SANDBOX_WARMPOOL_NAME": "bench", "SANDBOX_TEMPLATE_NAME": "bench", "SANDBOX_NAMESPACE": ns}, &pool)
	_, ext := benchCluster(b, &tmpl, &pool)
	coldClaims(b, ext, 0)
}
