// Package dirprovisioner backs the PersistentVolumeClaims of the local
// cluster's default StorageClass with directories on this machine, as an
// external provisioner: it creates a PersistentVolume for each claim the
// scheduler placed on its node, kube-controller-manager binds the two, and
// it deletes the directory and the volume once the claim is gone (reclaim
// policy Delete).
package dirprovisioner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

const (
	// Name is the provisioner name StorageClasses refer to.
	Name = "sandboxtest.io/local-dir"
	// DefaultClass is the name of the default StorageClass, as on Kind.
	DefaultClass = "standard"
)

// Annotations the scheduler and the PV controller set on claims, and the
// one that marks the volumes this provisioner made.
const (
	annSelectedNode        = "volume.kubernetes.io/selected-node"
	annStorageProvisioner  = "volume.kubernetes.io/storage-provisioner"
	annBetaStorageProv     = "volume.beta.kubernetes.io/storage-provisioner"
	annProvisionedBy       = "pv.kubernetes.io/provisioned-by"
	annDefaultStorageClass = "storageclass.kubernetes.io/is-default-class"
	hostnameLabel          = "kubernetes.io/hostname"
)

// StorageClass is the default class served by this provisioner: volumes
// are made once a pod using the claim is scheduled (so they land on its
// node) and deleted with their claim.
func StorageClass() *storagev1.StorageClass {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	del := corev1.PersistentVolumeReclaimDelete
	return &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        DefaultClass,
			Annotations: map[string]string{annDefaultStorageClass: "true"},
		},
		Provisioner:       Name,
		ReclaimPolicy:     &del,
		VolumeBindingMode: &wffc,
	}
}

// EnsureStorageClass creates StorageClass() unless a class of that name exists.
func EnsureStorageClass(ctx context.Context, cs kubernetes.Interface) error {
	_, err := cs.StorageV1().StorageClasses().Create(ctx, StorageClass(), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating StorageClass %s: %w", DefaultClass, err)
	}
	return nil
}

// Config configures a Provisioner.
type Config struct {
	Client kubernetes.Interface // required
	Node   string               // the node whose claims it serves; required
	Dir    string               // where volume directories are made; required
	Log    io.Writer            // failures worth a line; default discard
}

// Provisioner is a running provisioner; Stop ends it.
type Provisioner struct {
	cfg      Config
	claims   corelisters.PersistentVolumeClaimLister
	volumes  corelisters.PersistentVolumeLister
	classes  storagelisters.StorageClassLister
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	events   record.EventBroadcaster
	cancel   context.CancelFunc
	done     chan struct{}
}

// Queue keys: "claim/<namespace>/<name>" or "volume/<name>".
const (
	claimKey  = "claim/"
	volumeKey = "volume/"
)

// Start watches claims and volumes and returns once its caches are filled.
func Start(ctx context.Context, cfg Config) (*Provisioner, error) {
	if cfg.Client == nil || cfg.Node == "" || cfg.Dir == "" {
		return nil, errors.New("dirprovisioner: Client, Node and Dir are required")
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("dirprovisioner: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	inf := informers.NewSharedInformerFactory(cfg.Client, 0)
	eb := record.NewBroadcaster()
	eb.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cfg.Client.CoreV1().Events("")})
	p := &Provisioner{
		cfg:     cfg,
		claims:  inf.Core().V1().PersistentVolumeClaims().Lister(),
		volumes: inf.Core().V1().PersistentVolumes().Lister(),
		classes: inf.Storage().V1().StorageClasses().Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "dirprovisioner"}),
		recorder: eb.NewRecorder(scheme.Scheme, corev1.EventSource{Component: Name}),
		events:   eb,
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	enqueue := func(prefix string) cache.ResourceEventHandlerFuncs {
		add := func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				p.queue.Add(prefix + key)
			}
		}
		return cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, obj any) { add(obj) }, DeleteFunc: add}
	}
	if _, err := inf.Core().V1().PersistentVolumeClaims().Informer().AddEventHandler(enqueue(claimKey)); err != nil {
		cancel()
		return nil, err
	}
	if _, err := inf.Core().V1().PersistentVolumes().Informer().AddEventHandler(enqueue(volumeKey)); err != nil {
		cancel()
		return nil, err
	}
	inf.Start(runCtx.Done())
	for typ, ok := range inf.WaitForCacheSync(ctx.Done()) {
		if !ok {
			cancel()
			eb.Shutdown()
			return nil, fmt.Errorf("dirprovisioner: the %v cache did not sync: %v", typ, context.Cause(ctx))
		}
	}
	go func() {
		defer close(p.done)
		go func() { <-runCtx.Done(); p.queue.ShutDown() }()
		for p.next(runCtx) {
		}
	}()
	return p, nil
}

// Stop ends the provisioner; the volumes it made stay.
func (p *Provisioner) Stop() {
	p.cancel()
	<-p.done
	p.events.Shutdown()
}

func (p *Provisioner) next(ctx context.Context) bool {
	key, quit := p.queue.Get()
	if quit {
		return false
	}
	defer p.queue.Done(key)
	var err error
	switch {
	case strings.HasPrefix(key, claimKey):
		err = p.syncClaim(ctx, strings.TrimPrefix(key, claimKey))
	case strings.HasPrefix(key, volumeKey):
		err = p.syncVolume(ctx, strings.TrimPrefix(key, volumeKey))
	}
	if err == nil {
		p.queue.Forget(key)
		return true
	}
	if ctx.Err() == nil {
		fmt.Fprintf(p.cfg.Log, "sandboxtest: volume provisioner: %s: %v (retrying)\n", key, err)
		p.queue.AddRateLimited(key)
	}
	return true
}

// syncClaim makes the volume of a claim waiting for this provisioner on this node.
func (p *Provisioner) syncClaim(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	claim, err := p.claims.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if claim.Spec.VolumeName != "" || claim.DeletionTimestamp != nil {
		return nil
	}
	// The PV controller names the provisioner once it wants a volume made
	// (for WaitForFirstConsumer: after the scheduler picked the node).
	prov := claim.Annotations[annStorageProvisioner]
	if prov == "" {
		prov = claim.Annotations[annBetaStorageProv]
	}
	if prov != Name || claim.Spec.StorageClassName == nil {
		return nil
	}
	class, err := p.classes.Get(*claim.Spec.StorageClassName)
	if err != nil {
		return fmt.Errorf("StorageClass %s of claim %s: %w", *claim.Spec.StorageClassName, key, err)
	}
	if class.Provisioner != Name {
		return nil
	}
	node := claim.Annotations[annSelectedNode]
	wffc := class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
	if (wffc && node != p.cfg.Node) || (node != "" && node != p.cfg.Node) {
		return nil // not yet scheduled, or another node's
	}
	pvName := "pvc-" + string(claim.UID)
	if _, err := p.volumes.Get(pvName); err == nil {
		return nil
	}
	pv, err := p.volumeFor(claim, class, pvName)
	if err != nil {
		p.recorder.Event(claim, corev1.EventTypeWarning, "ProvisioningFailed", err.Error())
		return nil // the claim's spec will not change by retrying
	}
	dir := pv.Spec.Local.Path
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		p.recorder.Event(claim, corev1.EventTypeWarning, "ProvisioningFailed", err.Error())
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := p.cfg.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		p.recorder.Event(claim, corev1.EventTypeWarning, "ProvisioningFailed", err.Error())
		return err
	}
	p.recorder.Eventf(claim, corev1.EventTypeNormal, "ProvisioningSucceeded", "Successfully provisioned volume %s (directory %s on node %s)", pvName, dir, p.cfg.Node)
	return nil
}

// volumeFor is the PersistentVolume for claim: a directory of this machine,
// reachable from this node only, pre-bound to the claim.
func (p *Provisioner) volumeFor(claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, pvName string) (*corev1.PersistentVolume, error) {
	if claim.Spec.VolumeMode != nil && *claim.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return nil, fmt.Errorf("the local cluster provides filesystem volumes only, not volumeMode Block; use volumeMode Filesystem")
	}
	if claim.Spec.Selector != nil {
		return nil, fmt.Errorf("claims with a selector cannot be provisioned by %s; remove spec.selector", Name)
	}
	size, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		size = resource.MustParse("1Gi")
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	mode := corev1.PersistentVolumeFilesystem
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        pvName,
			Annotations: map[string]string{annProvisionedBy: Name},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes: claim.Spec.AccessModes,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID,
			},
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			MountOptions:                  class.MountOptions,
			VolumeMode:                    &mode,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				Local: &corev1.LocalVolumeSource{Path: filepath.Join(p.cfg.Dir, pvName)},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: hostnameLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{p.cfg.Node},
				}}}},
			}},
		},
	}, nil
}

// syncVolume deletes a released volume of ours whose reclaim policy is Delete.
func (p *Provisioner) syncVolume(ctx context.Context, name string) error {
	pv, err := p.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pv.Annotations[annProvisionedBy] != Name || pv.Status.Phase != corev1.VolumeReleased ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.DeletionTimestamp != nil {
		return nil
	}
	if pv.Spec.Local != nil {
		if err := p.removeDir(pv.Spec.Local.Path); err != nil {
			return fmt.Errorf("deleting the directory of PersistentVolume %s: %w", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = p.cfg.Client.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pv.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return err
	}
	return nil
}

// removeDir deletes a volume directory, which must lie directly in Dir.
// Directories a container made unwritable are opened up first.
func (p *Provisioner) removeDir(dir string) error {
	if filepath.Dir(filepath.Clean(dir)) != filepath.Clean(p.cfg.Dir) {
		return fmt.Errorf("%s is not a volume directory of %s; left in place", dir, p.cfg.Dir)
	}
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
