package kube

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// ApplyResult says what a server-side apply did to an object.
type ApplyResult string

const (
	ApplyCreated    ApplyResult = "created"    // the object did not exist
	ApplyConfigured ApplyResult = "configured" // it existed and the apply changed it
	ApplyUnchanged  ApplyResult = "unchanged"  // it existed and the apply was a no-op
)

// Applied is one object after Apply.
type Applied struct {
	Kind      string
	Namespace string // empty for cluster-scoped objects
	Name      string
	Result    ApplyResult
	// Object is the object as the server returned it.
	Object *unstructured.Unstructured
}

// Ref is "Kind namespace/name" (or "Kind name"), for messages and reports.
func (a Applied) Ref() string {
	if a.Namespace == "" {
		return a.Kind + " " + a.Name
	}
	return a.Kind + " " + a.Namespace + "/" + a.Name
}

// applyScheme knows the Go types sandboxtest applies, so typed objects need
// no TypeMeta filled in by hand.
var applyScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, extv1beta1.AddToScheme, gatewayv1.Install} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// Applier server-side applies objects as FieldManager with Force, so
// sandboxtest owns what it declares even when someone edited it by hand.
// Callers that must not take over what someone else created check
// CheckOwned first (deploy does, unless forced).
type Applier struct {
	dyn    dynamic.Interface
	mapper meta.ResettableRESTMapper
}

// NewApplier returns an Applier for the cluster of cfg. It does not contact
// the cluster until the first Apply.
func NewApplier(cfg *rest.Config) (*Applier, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// Apply server-side applies obj (a typed object of a known kind, or an
// *unstructured.Unstructured) and reports whether it was created, configured
// or unchanged, by comparing resourceVersion before and after: the API
// server does not write a no-op apply, so the version stays the same.
func (a *Applier) Apply(ctx context.Context, obj runtime.Object) (Applied, error) {
	u, err := ToUnstructured(obj)
	if err != nil {
		return Applied{}, err
	}
	ri, res, err := a.resource(u)
	if err != nil {
		return res, err
	}

	before := ""
	existing, err := ri.Get(ctx, res.Name, metav1.GetOptions{})
	switch {
	case err == nil:
		before = existing.GetResourceVersion()
	case !apierrors.IsNotFound(err):
		return res, fmt.Errorf("applying %s: %w", res.Ref(), err)
	}
	out, err := ri.Apply(ctx, res.Name, u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return res, fmt.Errorf("applying %s: %w", res.Ref(), err)
	}
	res.Object = out
	switch {
	case before == "":
		res.Result = ApplyCreated
	case out.GetResourceVersion() == before:
		res.Result = ApplyUnchanged
	default:
		res.Result = ApplyConfigured
	}
	return res, nil
}

// NotOwnedError is an object that exists and that sandboxtest did not
// create: applying over it would take it over.
type NotOwnedError struct {
	Ref      string   // "Kind namespace/name"
	Managers []string // its field managers
}

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("%s exists and is not sandboxtest's (no label %s=%s, field managers %v, none %q)",
		e.Ref, LabelManagedBy, ManagedByValue, e.Managers, FieldManager)
}

// CheckOwned returns a *NotOwnedError when obj exists in the cluster
// without being sandboxtest's: neither labelled LabelManagedBy=ManagedByValue
// (or LabelCreatedBy=CreatedByValue, as cold pools are) nor with a field
// managed by FieldManager. A missing object, or one sandboxtest owns, is nil.
func (a *Applier) CheckOwned(ctx context.Context, obj runtime.Object) error {
	u, err := ToUnstructured(obj)
	if err != nil {
		return err
	}
	ri, res, err := a.resource(u)
	if err != nil {
		return err
	}
	existing, err := ri.Get(ctx, res.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading %s: %w", res.Ref(), err)
	}
	l := existing.GetLabels()
	if l[LabelManagedBy] == ManagedByValue || l[LabelCreatedBy] == CreatedByValue {
		return nil
	}
	e := &NotOwnedError{Ref: res.Ref()}
	for _, m := range existing.GetManagedFields() {
		if m.Manager == FieldManager {
			return nil
		}
		e.Managers = append(e.Managers, m.Manager)
	}
	return e
}

// resource is the dynamic client of u's kind, in u's namespace when it is
// namespaced (u's namespace is cleared when it is not).
func (a *Applier) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, Applied, error) {
	gvk := u.GroupVersionKind()
	res := Applied{Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
	mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset() // a CRD may have been installed since discovery ran
		mapping, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, res, fmt.Errorf("applying %s: the cluster does not serve %s (is its CRD installed?): %w", res.Ref(), gvk.GroupVersion().WithKind(gvk.Kind), err)
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if res.Namespace == "" {
			return nil, res, fmt.Errorf("applying %s: a namespaced object needs a namespace", res.Ref())
		}
		ri = a.dyn.Resource(mapping.Resource).Namespace(res.Namespace)
	} else {
		u.SetNamespace("")
		res.Namespace = ""
	}
	return ri, res, nil
}

// ToUnstructured converts obj into an apply configuration: apiVersion and
// kind set from the scheme, and nothing the server owns (status, creation
// timestamp, resourceVersion, managedFields). Null fields are dropped: in an
// apply, a null would claim the field with no value.
func ToUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		u = u.DeepCopy()
		clean(u.Object)
		return u, nil
	}
	gvks, _, err := applyScheme.ObjectKinds(obj)
	if err != nil {
		return nil, fmt.Errorf("apply: %T is not a kind sandboxtest knows: %w", obj, err)
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvks[0])
	clean(u.Object)
	return u, nil
}

func clean(m map[string]any) {
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		for _, k := range []string{"creationTimestamp", "resourceVersion", "uid", "managedFields", "generation"} {
			delete(md, k)
		}
	}
	dropNulls(m)
}

func dropNulls(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if e == nil {
				delete(v, k)
				continue
			}
			dropNulls(e)
		}
	case []any:
		for _, e := range v {
			dropNulls(e)
		}
	}
}
