package dirprovisioner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agentsandbox/go-sandboxtest/internal/syncbuf"
)

// These tests play the PV controller's and the scheduler's part by hand
// (annotations, phases); the local cluster's tests run the real ones.

func claim(name, provisioner, node string) *corev1.PersistentVolumeClaim {
	class := DefaultClass
	ann := map[string]string{annStorageProvisioner: provisioner}
	if node != "" {
		ann[annSelectedNode] = node
	}
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), Annotations: ann},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
}

func TestProvisionAndDelete(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(StorageClass())
	dir := filepath.Join(t.TempDir(), "volumes")
	p, err := Start(ctx, Config{Client: client, Node: "node-a", Dir: dir})
	assert.NilError(t, err)
	defer p.Stop()

	for _, c := range []*corev1.PersistentVolumeClaim{
		claim("other-node", Name, "node-b"),
		claim("not-scheduled", Name, ""),
		claim("other-provisioner", "example.com/other", "node-a"),
		claim("mine", Name, "node-a"),
	} {
		_, err := client.CoreV1().PersistentVolumeClaims("default").Create(ctx, c, metav1.CreateOptions{})
		assert.NilError(t, err)
	}
	var pv *corev1.PersistentVolume
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		pv, err = client.CoreV1().PersistentVolumes().Get(ctx, "pvc-uid-mine", metav1.GetOptions{})
		if err != nil {
			return poll.Continue("%v", err)
		}
		return poll.Success()
	}, poll.WithTimeout(10*time.Second), poll.WithDelay(10*time.Millisecond))

	assert.Check(t, is.Equal(pv.Annotations[annProvisionedBy], Name))
	assert.Check(t, is.Equal(pv.Spec.ClaimRef.Name, "mine"))
	assert.Check(t, is.Equal(pv.Spec.ClaimRef.UID, types.UID("uid-mine")))
	assert.Check(t, is.Equal(pv.Spec.StorageClassName, DefaultClass))
	assert.Check(t, is.Equal(pv.Spec.PersistentVolumeReclaimPolicy, corev1.PersistentVolumeReclaimDelete))
	size := pv.Spec.Capacity[corev1.ResourceStorage]
	assert.Check(t, is.Equal(size.String(), "2Gi"))
	assert.Check(t, is.DeepEqual(pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values, []string{"node-a"}))
	assert.Assert(t, pv.Spec.Local != nil)
	assert.Check(t, is.Equal(pv.Spec.Local.Path, filepath.Join(dir, pv.Name)))
	fi, err := os.Stat(pv.Spec.Local.Path)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o700)))

	// Only the last claim got a volume (the work queue is FIFO: the others were looked at first).
	pvs, err := client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Len(pvs.Items, 1))

	// Data a container left, some of it unwritable, goes with the volume.
	assert.NilError(t, os.MkdirAll(filepath.Join(pv.Spec.Local.Path, "locked/sub"), 0o755))
	assert.NilError(t, os.Chmod(filepath.Join(pv.Spec.Local.Path, "locked"), 0o500))
	pv.Status.Phase = corev1.VolumeReleased
	_, err = client.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{})
	assert.NilError(t, err)
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		_, err := client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return poll.Continue("PV %s still exists (%v)", pv.Name, err)
		}
		return poll.Success()
	}, poll.WithTimeout(10*time.Second), poll.WithDelay(10*time.Millisecond))
	_, err = os.Stat(pv.Spec.Local.Path)
	assert.Check(t, os.IsNotExist(err), "volume directory still there: %v", err)
}

func TestReleasedVolumesThatAreNotOursStay(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	retain := corev1.PersistentVolumeReclaimRetain
	pv := func(name, provisioner string, policy corev1.PersistentVolumeReclaimPolicy) *corev1.PersistentVolume {
		return &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{annProvisionedBy: provisioner}},
			Spec: corev1.PersistentVolumeSpec{
				PersistentVolumeReclaimPolicy: policy,
				PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: outside}},
			},
			Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeReleased},
		}
	}
	client := fake.NewClientset(StorageClass(),
		pv("retained", Name, retain),
		pv("someone-elses", "example.com/other", corev1.PersistentVolumeReclaimDelete),
		pv("outside-dir", Name, corev1.PersistentVolumeReclaimDelete), // ours by annotation, but not in Dir
	)
	log := &syncbuf.Buffer{}
	p, err := Start(ctx, Config{Client: client, Node: "node-a", Dir: filepath.Join(t.TempDir(), "volumes"), Log: log})
	assert.NilError(t, err)
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if strings.Contains(log.String(), "volume/outside-dir: deleting the directory of PersistentVolume outside-dir: "+outside+" is not a volume directory") {
			return poll.Success()
		}
		return poll.Continue("log: %q", log.String())
	}, poll.WithTimeout(10*time.Second), poll.WithDelay(10*time.Millisecond))
	p.Stop() // drains the queue: every volume was looked at
	pvs, err := client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Len(pvs.Items, 3))
	_, err = os.Stat(outside)
	assert.Check(t, err, "a directory outside the provisioner's folder was removed")
}
