package localcluster

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
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

// gatewayResync re-runs the controller now and then, so a listener whose
// port was busy or not permitted is tried again without an API event.
const gatewayResync = 5 * time.Second

// gatewayController programs Gateways of the local GatewayClass: each gets a
// loopback address of the host and an HTTP server per listener port there
// (dataPlane), which proxies to the Ready pods behind its HTTPRoutes'
// Services. It writes the Gateways' and HTTPRoutes' status.
type gatewayController struct {
	gw      gwclient.Interface
	pods    cache.Indexer
	svcs    cache.Indexer
	gws     cache.Indexer
	routes  cache.Indexer
	changed chan struct{}
	plane   *dataPlane
}

// startGatewayController creates the local GatewayClass and keeps its
// Gateways programmed until ctx ends; then their listeners close, and done
// is closed. dial reaches pods (nil: a plain net.Dialer).
func startGatewayController(ctx context.Context, cfg *rest.Config, dial DialFunc) (done <-chan struct{}, err error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	gw, err := gwclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	class := &gwv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: kube.LocalGatewayClass},
		Spec: gwv1.GatewayClassSpec{
			ControllerName: GatewayControllerName,
			Description:    ptrTo("sandboxtest local: host loopback listeners proxying to pods"),
		},
	}
	if _, err := gw.GatewayV1().GatewayClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating GatewayClass %s: %w", kube.LocalGatewayClass, err)
	}
	c := &gatewayController{gw: gw, changed: make(chan struct{}, 1), plane: newDataPlane(dial)}
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
			return nil, err
		}
	}
	c.pods = coreInf.Core().V1().Pods().Informer().GetIndexer()
	c.svcs = coreInf.Core().V1().Services().Informer().GetIndexer()
	c.gws = gwInf.Gateway().V1().Gateways().Informer().GetIndexer()
	c.routes = gwInf.Gateway().V1().HTTPRoutes().Informer().GetIndexer()
	coreInf.Start(ctx.Done())
	gwInf.Start(ctx.Done())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		c.run(ctx)
	}()
	return stopped, nil
}

func (c *gatewayController) poke() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *gatewayController) run(ctx context.Context) {
	defer c.plane.closeAll()
	tick := time.NewTicker(gatewayResync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.changed:
		case <-tick.C:
		}
		c.acceptClass(ctx)
		live := map[types.UID]bool{}
		local := map[string]*gwv1.Gateway{} // namespace/name
		for _, obj := range c.gws.List() {
			g := obj.(*gwv1.Gateway)
			if string(g.Spec.GatewayClassName) == kube.LocalGatewayClass && g.DeletionTimestamp == nil {
				live[g.UID] = true
				local[g.Namespace+"/"+g.Name] = g
			}
		}
		c.plane.closeExcept(live) // deleted Gateways first, so their addresses are free again
		for _, g := range local {
			c.program(ctx, g)
		}
		c.writeRouteStatus(ctx, local)
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

var httpRouteKind = gwv1.RouteGroupKind{Group: ptrTo(gwv1.Group(gwv1.GroupName)), Kind: "HTTPRoute"}

// listenerProblem is why a listener is not accepted, or "" when it is.
func listenerProblem(l gwv1.Listener) (reason gwv1.ListenerConditionReason, msg string) {
	if l.Protocol != gwv1.HTTPProtocolType {
		return gwv1.ListenerReasonUnsupportedProtocol, fmt.Sprintf("protocol %s: the local gateway serves HTTP listeners only", l.Protocol)
	}
	return "", ""
}

// routesKindOK: a listener's allowedRoutes.kinds, when given, must allow HTTPRoute.
func routesKindOK(l gwv1.Listener) bool {
	if l.AllowedRoutes == nil || len(l.AllowedRoutes.Kinds) == 0 {
		return true
	}
	for _, k := range l.AllowedRoutes.Kinds {
		if k.Kind == "HTTPRoute" && (k.Group == nil || *k.Group == gwv1.GroupName) {
			return true
		}
	}
	return false
}

// program opens the Gateway's listeners, gives each port its routes, and
// writes the Gateway's status.
func (c *gatewayController) program(ctx context.Context, g *gwv1.Gateway) {
	key := g.Namespace + "/" + g.Name
	var ports []int32
	seen := map[int32]bool{}
	for _, l := range g.Spec.Listeners {
		if r, _ := listenerProblem(l); r == "" && !seen[int32(l.Port)] {
			seen[int32(l.Port)] = true
			ports = append(ports, int32(l.Port))
		}
	}
	addr, bindErrs := c.plane.ensure(g.UID, key, ports)

	attached := c.attachments(g)
	tables := map[int32]*routeTable{}
	for _, l := range g.Spec.Listeners {
		port := int32(l.Port)
		if tables[port] == nil {
			tables[port] = &routeTable{gateway: key}
		}
		for _, r := range attached[l.Name] {
			host := ""
			if l.Hostname != nil {
				host = string(*l.Hostname)
			}
			tables[port].rules = append(tables[port].rules, c.rulesOf(r, host)...)
		}
	}
	for port, t := range tables {
		sortRules(t.rules)
		c.plane.setTable(g.UID, port, t)
	}

	orig := g
	g = g.DeepCopy()
	old := map[gwv1.SectionName][]metav1.Condition{}
	for _, ls := range g.Status.Listeners { // the copy's: SetStatusCondition writes into them
		old[ls.Name] = ls.Conditions
	}
	g.Status.Listeners = nil
	var problems []string
	listening, valid := 0, 0 // valid: a listener this controller can serve, bound or not
	for _, l := range g.Spec.Listeners {
		ls := gwv1.ListenerStatus{Name: l.Name, Conditions: old[l.Name], AttachedRoutes: int32(len(attached[l.Name])), SupportedKinds: []gwv1.RouteGroupKind{}}
		set := func(t gwv1.ListenerConditionType, ok bool, reason gwv1.ListenerConditionReason, msg string) {
			st := metav1.ConditionTrue
			if !ok {
				st = metav1.ConditionFalse
			}
			meta.SetStatusCondition(&ls.Conditions, metav1.Condition{Type: string(t), Status: st, Reason: string(reason), Message: msg, ObservedGeneration: g.Generation})
		}
		reason, msg := listenerProblem(l)
		if reason == "" {
			if err := bindErrs[int32(l.Port)]; err != nil {
				reason, msg = gwv1.ListenerReasonPortUnavailable, err.Error()
			}
		}
		if routesKindOK(l) && l.Protocol == gwv1.HTTPProtocolType {
			ls.SupportedKinds = []gwv1.RouteGroupKind{httpRouteKind}
			set(gwv1.ListenerConditionResolvedRefs, true, gwv1.ListenerReasonResolvedRefs, "")
		} else {
			set(gwv1.ListenerConditionResolvedRefs, false, gwv1.ListenerReasonInvalidRouteKinds, "the local gateway supports HTTPRoute only")
		}
		switch {
		case reason == gwv1.ListenerReasonUnsupportedProtocol:
			set(gwv1.ListenerConditionAccepted, false, reason, msg)
			set(gwv1.ListenerConditionProgrammed, false, gwv1.ListenerReasonInvalid, msg)
			problems = append(problems, fmt.Sprintf("listener %s: %s", l.Name, msg))
		case reason != "":
			valid++
			set(gwv1.ListenerConditionAccepted, false, reason, msg)
			set(gwv1.ListenerConditionProgrammed, false, reason, msg)
			problems = append(problems, fmt.Sprintf("listener %s: %s", l.Name, msg))
		default:
			valid++
			listening++
			set(gwv1.ListenerConditionAccepted, true, gwv1.ListenerReasonAccepted, "")
			set(gwv1.ListenerConditionProgrammed, true, gwv1.ListenerReasonProgrammed, fmt.Sprintf("listening on %s:%d", addr, l.Port))
		}
		ls.Conditions = keepConditions(ls.Conditions, gwv1.ListenerConditionAccepted, gwv1.ListenerConditionProgrammed, gwv1.ListenerConditionResolvedRefs)
		g.Status.Listeners = append(g.Status.Listeners, ls)
	}

	acceptedCond := metav1.Condition{Type: string(gwv1.GatewayConditionAccepted), Status: metav1.ConditionTrue,
		Reason: string(gwv1.GatewayReasonAccepted), ObservedGeneration: g.Generation}
	programmed := metav1.Condition{Type: string(gwv1.GatewayConditionProgrammed), Status: metav1.ConditionTrue,
		Reason: string(gwv1.GatewayReasonProgrammed), Message: fmt.Sprintf("listening on %s, proxying to the Ready pods behind its HTTPRoutes", addr), ObservedGeneration: g.Generation}
	switch {
	case len(g.Spec.Listeners) == 0:
		programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonInvalid), "no listeners"
	case len(problems) > 0:
		programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonInvalid), strings.Join(problems, "; ")
		acceptedCond.Reason, acceptedCond.Message = string(gwv1.GatewayReasonListenersNotValid), strings.Join(problems, "; ")
		if valid == 0 {
			acceptedCond.Status = metav1.ConditionFalse
		}
	}
	g.Status.Addresses = nil
	if listening > 0 {
		g.Status.Addresses = []gwv1.GatewayStatusAddress{{Type: ptrTo(gwv1.IPAddressType), Value: addr.String()}}
	}
	meta.SetStatusCondition(&g.Status.Conditions, acceptedCond)
	meta.SetStatusCondition(&g.Status.Conditions, programmed)
	if equality.Semantic.DeepEqual(orig.Status, g.Status) {
		return // nothing to write; avoids an update loop through our own informer
	}
	c.updateStatus(ctx, func(ctx context.Context) error {
		_, err := c.gw.GatewayV1().Gateways(g.Namespace).UpdateStatus(ctx, g, metav1.UpdateOptions{})
		return err
	})
}

func (c *gatewayController) updateStatus(ctx context.Context, update func(context.Context) error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := update(ctx); apierrors.IsConflict(err) {
		c.poke() // a newer version arrived; the informer brings it
	}
}

// keepConditions drops condition types this controller no longer sets.
func keepConditions(cs []metav1.Condition, types ...gwv1.ListenerConditionType) []metav1.Condition {
	var out []metav1.Condition
	for _, c := range cs {
		for _, t := range types {
			if c.Type == string(t) {
				out = append(out, c)
			}
		}
	}
	return out
}

// parentAttach is what one parentRef of a route to a local Gateway got.
type parentAttach struct {
	listeners []gwv1.SectionName
	reason    gwv1.RouteConditionReason // when listeners is empty
	msg       string
}

// attachParent decides which listeners of g a route's parentRef attaches to.
func attachParent(r *gwv1.HTTPRoute, p gwv1.ParentReference, g *gwv1.Gateway) parentAttach {
	var out parentAttach
	matched := false
	for _, l := range g.Spec.Listeners {
		if (p.SectionName != nil && *p.SectionName != l.Name) || (p.Port != nil && *p.Port != l.Port) {
			continue
		}
		if reason, _ := listenerProblem(l); reason != "" || !routesKindOK(l) {
			continue
		}
		matched = true
		from := gwv1.NamespacesFromSame
		if l.AllowedRoutes != nil && l.AllowedRoutes.Namespaces != nil && l.AllowedRoutes.Namespaces.From != nil {
			from = *l.AllowedRoutes.Namespaces.From
		}
		if from == gwv1.NamespacesFromAll || (from == gwv1.NamespacesFromSame && r.Namespace == g.Namespace) {
			out.listeners = append(out.listeners, l.Name)
		}
	}
	switch {
	case len(out.listeners) > 0:
	case !matched:
		out.reason, out.msg = gwv1.RouteReasonNoMatchingParent, "no HTTP listener of the Gateway matches the parentRef's sectionName and port"
	default:
		out.reason, out.msg = gwv1.RouteReasonNotAllowedByListeners,
			fmt.Sprintf("the listeners' allowedRoutes do not admit routes from namespace %s (the local gateway supports from: Same and All)", r.Namespace)
	}
	return out
}

// attachments lists, per listener of g, the routes attached to it.
func (c *gatewayController) attachments(g *gwv1.Gateway) map[gwv1.SectionName][]*gwv1.HTTPRoute {
	out := map[gwv1.SectionName][]*gwv1.HTTPRoute{}
	for _, obj := range c.routes.List() {
		r := obj.(*gwv1.HTTPRoute)
		added := map[gwv1.SectionName]bool{}
		for _, p := range r.Spec.ParentRefs {
			if !refersToGateway(p, r.Namespace, g) {
				continue
			}
			for _, l := range attachParent(r, p, g).listeners {
				if !added[l] {
					added[l] = true
					out[l] = append(out[l], r)
				}
			}
		}
	}
	return out
}

func refersToGateway(p gwv1.ParentReference, routeNS string, g *gwv1.Gateway) bool {
	ns := routeNS
	if p.Namespace != nil {
		ns = string(*p.Namespace)
	}
	return (p.Group == nil || *p.Group == gwv1.GroupName) && (p.Kind == nil || *p.Kind == "Gateway") &&
		string(p.Name) == g.Name && ns == g.Namespace
}

// rulesOf turns a route's rules into one routeRule per match, with the
// endpoints of its backends.
func (c *gatewayController) rulesOf(r *gwv1.HTTPRoute, listenerHost string) []*routeRule {
	var out []*routeRule
	var hostnames []string
	for _, h := range r.Spec.Hostnames {
		hostnames = append(hostnames, string(h))
	}
	for _, rule := range r.Spec.Rules {
		eps, why := c.endpointsOf(r, rule.BackendRefs)
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.HTTPRouteMatch{{}}
		}
		for _, m := range matches {
			rr := &routeRule{route: r.Namespace + "/" + r.Name, listenerHosts: []string{listenerHost}, hostnames: hostnames,
				pathType: string(gwv1.PathMatchPathPrefix), path: "/", endpoints: eps, noEndpoints: why, headers: map[string]string{}}
			if m.Path != nil {
				if m.Path.Type != nil {
					rr.pathType = string(*m.Path.Type)
				}
				if m.Path.Value != nil {
					rr.path = *m.Path.Value
				}
				if rr.pathType == string(gwv1.PathMatchRegularExpression) {
					rr.pathRE, _ = regexp.Compile("^(?:" + rr.path + ")$") // an invalid one matches nothing
				}
			}
			if m.Method != nil {
				rr.method = string(*m.Method)
			}
			for _, h := range m.Headers {
				if h.Type == nil || *h.Type == gwv1.HeaderMatchExact {
					rr.headers[string(h.Name)] = h.Value
				}
			}
			out = append(out, rr)
		}
	}
	return out
}

// sortRules orders rules as Gateway API's precedence says, roughly: exact
// paths, then longer prefixes, then method and header matches.
func sortRules(rules []*routeRule) {
	rank := func(r *routeRule) int {
		switch r.pathType {
		case string(gwv1.PathMatchExact):
			return 0
		case string(gwv1.PathMatchPathPrefix):
			return 1
		}
		return 2
	}
	sort.SliceStable(rules, func(i, j int) bool {
		a, b := rules[i], rules[j]
		if rank(a) != rank(b) {
			return rank(a) < rank(b)
		}
		if len(a.path) != len(b.path) {
			return len(a.path) > len(b.path)
		}
		if (a.method != "") != (b.method != "") {
			return a.method != ""
		}
		return len(a.headers) > len(b.headers)
	})
}

// backendProblem is why a backendRef cannot be resolved, or "" when it can.
func (c *gatewayController) backendProblem(routeNS string, b gwv1.BackendObjectReference) (gwv1.RouteConditionReason, string, *corev1.Service, *corev1.ServicePort) {
	if (b.Group != nil && *b.Group != "") || (b.Kind != nil && *b.Kind != "Service") {
		return gwv1.RouteReasonInvalidKind, fmt.Sprintf("backendRef %s: only Services are supported", b.Name), nil, nil
	}
	if b.Namespace != nil && string(*b.Namespace) != routeNS {
		return gwv1.RouteReasonRefNotPermitted, fmt.Sprintf("backendRef %s/%s: the local gateway reads no ReferenceGrants; put the Service in the route's namespace %s", *b.Namespace, b.Name, routeNS), nil, nil
	}
	o, ok, _ := c.svcs.GetByKey(routeNS + "/" + string(b.Name))
	if !ok {
		return gwv1.RouteReasonBackendNotFound, fmt.Sprintf("Service %s/%s not found", routeNS, b.Name), nil, nil
	}
	svc := o.(*corev1.Service)
	if b.Port == nil {
		return gwv1.RouteReasonUnsupportedValue, fmt.Sprintf("backendRef %s has no port", b.Name), svc, nil
	}
	for i, p := range svc.Spec.Ports {
		if p.Port == int32(*b.Port) {
			return "", "", svc, &svc.Spec.Ports[i]
		}
	}
	return gwv1.RouteReasonBackendNotFound, fmt.Sprintf("Service %s/%s has no port %d", routeNS, b.Name, *b.Port), svc, nil
}

// endpointsOf lists the Ready pods behind a rule's backends, at the
// Service port's targetPort (a number, or a container port's name).
func (c *gatewayController) endpointsOf(r *gwv1.HTTPRoute, refs []gwv1.HTTPBackendRef) ([]endpoint, string) {
	var eps []endpoint
	var why []string
	for _, b := range refs {
		if b.Weight != nil && *b.Weight == 0 {
			continue
		}
		reason, msg, svc, sp := c.backendProblem(r.Namespace, b.BackendObjectReference)
		if reason != "" {
			why = append(why, msg)
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		n := 0
		for _, obj := range c.pods.List() {
			p := obj.(*corev1.Pod)
			if p.Namespace != svc.Namespace || len(svc.Spec.Selector) == 0 || !sel.Matches(labels.Set(p.Labels)) ||
				p.DeletionTimestamp != nil || p.Status.PodIP == "" || !kube.PodReady(p) {
				continue
			}
			if port := targetPort(p, sp); port > 0 {
				eps = append(eps, endpoint{addr: fmt.Sprintf("%s:%d", p.Status.PodIP, port), pod: p.Namespace + "/" + p.Name})
				n++
			}
		}
		if n == 0 {
			why = append(why, fmt.Sprintf("no Ready pod behind Service %s/%s (selector %q, port %d)", svc.Namespace, svc.Name, sel, sp.Port))
		}
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].addr < eps[j].addr })
	if len(refs) == 0 {
		why = append(why, "the rule has no backendRefs")
	}
	return eps, strings.Join(why, "; ")
}

// targetPort is the pod's port for a Service port, 0 when a named one is not among its containers'.
func targetPort(p *corev1.Pod, sp *corev1.ServicePort) int32 {
	switch {
	case sp.TargetPort.IntValue() > 0:
		return int32(sp.TargetPort.IntValue())
	case sp.TargetPort.StrVal == "":
		return sp.Port
	}
	for _, ctr := range p.Spec.Containers {
		for _, cp := range ctr.Ports {
			if cp.Name == sp.TargetPort.StrVal {
				return cp.ContainerPort
			}
		}
	}
	return 0
}

// writeRouteStatus sets, on every HTTPRoute with a parentRef to a local
// Gateway, that parent's Accepted and ResolvedRefs; other controllers'
// parents are kept.
func (c *gatewayController) writeRouteStatus(ctx context.Context, local map[string]*gwv1.Gateway) {
	for _, obj := range c.routes.List() {
		orig := obj.(*gwv1.HTTPRoute)
		r := orig.DeepCopy()
		parents := []gwv1.RouteParentStatus{} // required in the schema: never null
		for _, ps := range r.Status.Parents {
			if ps.ControllerName != GatewayControllerName {
				parents = append(parents, ps)
			}
		}
		resolved, resolvedMsg := gwv1.RouteReasonResolvedRefs, ""
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				if reason, msg, _, _ := c.backendProblem(r.Namespace, b.BackendObjectReference); reason != "" && resolvedMsg == "" {
					resolved, resolvedMsg = reason, msg
				}
			}
		}
		ours := 0
		for _, p := range r.Spec.ParentRefs {
			ns := r.Namespace
			if p.Namespace != nil {
				ns = string(*p.Namespace)
			}
			g := local[ns+"/"+string(p.Name)]
			if g == nil || !refersToGateway(p, r.Namespace, g) {
				continue
			}
			ours++
			ps := gwv1.RouteParentStatus{ParentRef: p, ControllerName: GatewayControllerName}
			for _, old := range r.Status.Parents { // the copy's: SetStatusCondition writes into them
				if old.ControllerName == GatewayControllerName && equality.Semantic.DeepEqual(old.ParentRef, p) {
					ps.Conditions = old.Conditions
				}
			}
			a := attachParent(r, p, g)
			acc := metav1.Condition{Type: string(gwv1.RouteConditionAccepted), Status: metav1.ConditionTrue, Reason: string(gwv1.RouteReasonAccepted), ObservedGeneration: r.Generation}
			if len(a.listeners) == 0 {
				acc.Status, acc.Reason, acc.Message = metav1.ConditionFalse, string(a.reason), a.msg
			}
			res := metav1.Condition{Type: string(gwv1.RouteConditionResolvedRefs), Status: metav1.ConditionTrue, Reason: string(resolved), Message: resolvedMsg, ObservedGeneration: r.Generation}
			if resolvedMsg != "" {
				res.Status = metav1.ConditionFalse
			}
			meta.SetStatusCondition(&ps.Conditions, acc)
			meta.SetStatusCondition(&ps.Conditions, res)
			parents = append(parents, ps)
		}
		if ours == 0 && len(parents) == len(r.Status.Parents) {
			continue // not ours, and nothing of ours to remove
		}
		r.Status.Parents = parents
		if equality.Semantic.DeepEqual(orig.Status, r.Status) {
			continue
		}
		c.updateStatus(ctx, func(ctx context.Context) error {
			_, err := c.gw.GatewayV1().HTTPRoutes(r.Namespace).UpdateStatus(ctx, r, metav1.UpdateOptions{})
			return err
		})
	}
}

func ptrTo[T any](v T) *T { return &v }
