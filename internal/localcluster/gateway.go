package localcluster

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// GatewayControllerName is the controllerName of the local GatewayClass.
const GatewayControllerName = "sandboxtest.io/local-gateway-controller"

// gatewayController programs Gateways of the local GatewayClass the way
// cloud-provider-kind does on Kind: each gets, as its address, the IP of a
// Ready pod behind the Service its HTTPRoute points at. There is no proxy,
// so a listener must use the backend's own port.
type gatewayController struct {
	cs      kubernetes.Interface
	gw      gwclient.Interface
	pods    cache.Indexer
	svcs    cache.Indexer
	gws     cache.Indexer
	routes  cache.Indexer
	changed chan struct{}
}

// startGatewayController creates the local GatewayClass and keeps its Gateways programmed until ctx ends.
func startGatewayController(ctx context.Context, cfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	gw, err := gwclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	class := &gwv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: kube.LocalGatewayClass},
		Spec: gwv1.GatewayClassSpec{
			ControllerName: GatewayControllerName,
			Description:    ptrTo("sandboxtest local cluster: address = a Ready backend pod"),
		},
	}
	if _, err := gw.GatewayV1().GatewayClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating GatewayClass %s: %w", kube.LocalGatewayClass, err)
	}
	c := &gatewayController{cs: cs, gw: gw, changed: make(chan struct{}, 1)}
	coreInf := informers.NewSharedInformerFactory(cs, 0)
	gwInf := gwinformers.NewSharedInformerFactory(gw, 0)
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.poke() },
		UpdateFunc: func(any, any) { c.poke() },
		DeleteFunc: func(any) { c.poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{
		coreInf.Core().V1().Pods().Informer(), coreInf.Core().V1().Services().Informer(),
		gwInf.Gateway().V1().Gateways().Informer(), gwInf.Gateway().V1().HTTPRoutes().Informer(),
		gwInf.Gateway().V1().GatewayClasses().Informer(),
	} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}
	c.pods = coreInf.Core().V1().Pods().Informer().GetIndexer()
	c.svcs = coreInf.Core().V1().Services().Informer().GetIndexer()
	c.gws = gwInf.Gateway().V1().Gateways().Informer().GetIndexer()
	c.routes = gwInf.Gateway().V1().HTTPRoutes().Informer().GetIndexer()
	coreInf.Start(ctx.Done())
	gwInf.Start(ctx.Done())
	go c.run(ctx)
	return nil
}

func (c *gatewayController) poke() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *gatewayController) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.changed:
		}
		c.acceptClass(ctx)
		for _, obj := range c.gws.List() {
			g := obj.(*gwv1.Gateway)
			if string(g.Spec.GatewayClassName) == kube.LocalGatewayClass {
				c.program(ctx, g)
			}
		}
	}
}

func (c *gatewayController) acceptClass(ctx context.Context) {
	class, err := c.gw.GatewayV1().GatewayClasses().Get(ctx, kube.LocalGatewayClass, metav1.GetOptions{})
	if err != nil || meta.IsStatusConditionTrue(class.Status.Conditions, string(gwv1.GatewayClassConditionStatusAccepted)) {
		return
	}
	meta.SetStatusCondition(&class.Status.Conditions, metav1.Condition{
		Type: string(gwv1.GatewayClassConditionStatusAccepted), Status: metav1.ConditionTrue,
		Reason: string(gwv1.GatewayClassReasonAccepted), ObservedGeneration: class.Generation,
	})
	_, _ = c.gw.GatewayV1().GatewayClasses().UpdateStatus(ctx, class, metav1.UpdateOptions{})
}

// program sets the Gateway's address and conditions from its backend's Ready pods.
func (c *gatewayController) program(ctx context.Context, g *gwv1.Gateway) {
	ip, reason, msg := c.backendAddress(g)
	orig := g
	g = g.DeepCopy()
	accepted := metav1.Condition{Type: string(gwv1.GatewayConditionAccepted), Status: metav1.ConditionTrue,
		Reason: string(gwv1.GatewayReasonAccepted), ObservedGeneration: g.Generation}
	programmed := metav1.Condition{Type: string(gwv1.GatewayConditionProgrammed), Status: metav1.ConditionTrue,
		Reason: string(gwv1.GatewayReasonProgrammed), Message: "address is a Ready backend pod: " + ip, ObservedGeneration: g.Generation}
	g.Status.Addresses = nil
	if ip == "" {
		programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, reason, msg
	} else {
		g.Status.Addresses = []gwv1.GatewayStatusAddress{{Type: ptrTo(gwv1.IPAddressType), Value: ip}}
	}
	meta.SetStatusCondition(&g.Status.Conditions, accepted)
	meta.SetStatusCondition(&g.Status.Conditions, programmed)
	if sameConditions(orig.Status.Conditions, g.Status.Conditions) && equality.Semantic.DeepEqual(orig.Status.Addresses, g.Status.Addresses) {
		return // nothing to write; avoids an update loop through our own informer
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.gw.GatewayV1().Gateways(g.Namespace).UpdateStatus(ctx, g, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
		c.poke() // a newer version arrived; the informer brings it
	}
}

// backendAddress follows Gateway → HTTPRoute → Service → Ready pod, and
// checks that every listener uses the port the pod serves on.
func (c *gatewayController) backendAddress(g *gwv1.Gateway) (ip, reason, msg string) {
	var svc *corev1.Service
	var svcPort int32
	for _, obj := range c.routes.List() {
		r := obj.(*gwv1.HTTPRoute)
		if !routeAttaches(r, g) {
			continue
		}
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				if (b.Kind != nil && *b.Kind != "Service") || b.Port == nil {
					continue
				}
				ns := r.Namespace
				if b.Namespace != nil {
					ns = string(*b.Namespace)
				}
				if o, ok, _ := c.svcs.GetByKey(ns + "/" + string(b.Name)); ok {
					svc, svcPort = o.(*corev1.Service), int32(*b.Port)
				}
			}
		}
	}
	if svc == nil {
		return "", string(gwv1.GatewayReasonPending), "no HTTPRoute attached to this Gateway points at an existing Service"
	}
	target := svcPort
	for _, p := range svc.Spec.Ports {
		if p.Port == svcPort && p.TargetPort.IntValue() > 0 {
			target = int32(p.TargetPort.IntValue())
		}
	}
	for _, l := range g.Spec.Listeners {
		if int32(l.Port) != target {
			return "", string(gwv1.GatewayReasonInvalid), fmt.Sprintf(
				"listener %s uses port %d, but the local cluster has no gateway proxy: a listener must use the backend's port %d",
				l.Name, l.Port, target)
		}
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	for _, obj := range c.pods.List() {
		p := obj.(*corev1.Pod)
		if p.Namespace == svc.Namespace && len(svc.Spec.Selector) > 0 && sel.Matches(labels.Set(p.Labels)) &&
			p.DeletionTimestamp == nil && p.Status.PodIP != "" && kube.PodReady(p) {
			return p.Status.PodIP, "", ""
		}
	}
	return "", string(gwv1.GatewayReasonNoResources), fmt.Sprintf("no Ready pod behind Service %s/%s (selector %s)", svc.Namespace, svc.Name, sel)
}

func routeAttaches(r *gwv1.HTTPRoute, g *gwv1.Gateway) bool {
	for _, p := range r.Spec.ParentRefs {
		ns := r.Namespace
		if p.Namespace != nil {
			ns = string(*p.Namespace)
		}
		if string(p.Name) == g.Name && ns == g.Namespace && (p.Kind == nil || *p.Kind == "Gateway") {
			return true
		}
	}
	return false
}

func sameConditions(a, b []metav1.Condition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Status != b[i].Status || a[i].Reason != b[i].Reason ||
			a[i].Message != b[i].Message || a[i].ObservedGeneration != b[i].ObservedGeneration {
			return false
		}
	}
	return true
}

func ptrTo[T any](v T) *T { return &v }
