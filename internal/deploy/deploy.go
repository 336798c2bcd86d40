// Package deploy puts in a cluster what sandboxtest suites need: the
// sandbox router, templates with their warm pools, and optionally a Gateway.
// sandboxtest.Main, fixtures.Deploy and `sandboxtest-setup deploy` use it.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// DefaultRouterImage is the published Go sandbox-router (promoted by
// kubernetes/k8s.io PR #9883). On the local cluster any image containing
// "sandbox-router" runs the router built from agent-sandbox.
const DefaultRouterImage = "registry.k8s.io/agent-sandbox/sandbox-router-go:v1.0.0"

// DefaultWait bounds how long Deploy waits for the router and pools.
const DefaultWait = 2 * time.Minute

// Options configure Deploy. The zero value deploys the embedded
// templates, a one-replica router and cold (replicas 0) pools to "default",
// and waits up to DefaultWait.
type Options struct {
	// Namespace receives everything namespaced (templates' own namespaces are
	// ignored). Default "default"; created when missing.
	Namespace string
	// RouterNamespace, when set, receives the router (ServiceAccount,
	// Deployment, Service) and the Gateway with its HTTPRoute instead of
	// Namespace, as upstream's manifests put it in agent-sandbox-system;
	// created when missing. Tests then set SANDBOXTEST_ROUTER_NAMESPACE.
	RouterNamespace string
	// Templates holds SandboxTemplate YAML files (fixtures.Deploy defaults
	// it to templates.FS). Nil: only TemplatePaths.
	Templates fs.FS
	// TemplatePaths are more template files or directories (--templates); a
	// template there replaces one of the same name from Templates.
	TemplatePaths []string
	// RouterImage is the router's image. Default DefaultRouterImage.
	RouterImage string
	// RouterReplicas is the router Deployment's replicas. Default 1.
	RouterReplicas int32
	// PoolReplicas is each warm pool's replicas. Default 0: claims cold-start,
	// and no sandbox runs before a test asks for one.
	PoolReplicas int32
	// Gateway, when set, names a Gateway (and HTTPRoute to the router) to create.
	Gateway string
	// GatewayClass is the Gateway's class. Default kube.LocalGatewayClass on
	// the local cluster; required elsewhere.
	GatewayClass string
	// GatewayPort is the Gateway's HTTP listener port. Default 8080 on the
	// local class (ports below 1024 need privileges there), 80 otherwise.
	GatewayPort int32
	// Wait bounds the wait for a Ready router pod and ready pools. Default
	// DefaultWait; negative: do not wait.
	Wait time.Duration
	// Log receives progress lines. Default: discard.
	Log io.Writer
	// Force takes over objects that exist without being sandboxtest's (see
	// kube.Applier.CheckOwned): a user's own template or pool of the same
	// name is replaced. Without it, Deploy applies nothing when one
	// exists and says which (--force).
	Force bool
}

// Report is what Deploy applied, in apply order.
type Report struct {
	Namespace string
	// RouterNamespace is where the router went (Namespace unless told).
	RouterNamespace string
	// Local is true on sandboxtest's local cluster.
	Local bool
	// Templates names the templates deployed, each with a pool of its name.
	Templates []string
	Objects   []Object
	// Duration is the whole deploy, waiting included.
	Duration time.Duration
}

// Object is one applied object.
type Object struct {
	Kind      string
	Namespace string // empty when cluster-scoped
	Name      string
	Result    kube.ApplyResult
	// State is readiness where it applies ("1/1 ready"), else "-".
	State string
}

// Ref is "Kind namespace/name" (or "Kind name").
func (o Object) Ref() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// Deploy puts in a cluster what sandboxtest suites need: the sandbox router
// (ServiceAccount, ClusterRole + binding for its pod cache, Deployment,
// Service), every template with a warm pool of the same name, and optionally
// a Gateway with an HTTPRoute to the router. It validates all input before
// applying anything, applies with server-side apply, then waits (bounded by
// opts.Wait) for a Ready router pod and for each pool's replicas. It does not
// wait for the Gateway to be programmed.
func Deploy(ctx context.Context, cfg *rest.Config, opts Options) (*Report, error) {
	start := time.Now()
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	templates, err := loadTemplates(opts)
	if err != nil {
		return nil, fmt.Errorf("sandboxtest: deploy: %w", err)
	}
	if err := kube.CheckReachable(ctx, cfg); err != nil {
		return nil, fmt.Errorf("sandboxtest: deploy: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ext, err := extclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	local, err := kube.IsLocalCluster(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("sandboxtest: deploy: %w", err)
	}
	if err := opts.gatewayDefaults(local); err != nil {
		return nil, err
	}
	objs := desiredObjects(opts, templates)

	applier, err := kube.NewApplier(cfg)
	if err != nil {
		return nil, err
	}
	if !opts.Force {
		if err := checkOwned(ctx, applier, objs); err != nil {
			return nil, err
		}
	}
	rep := &Report{Namespace: opts.Namespace, RouterNamespace: opts.RouterNamespace, Local: local}
	for _, t := range templates {
		rep.Templates = append(rep.Templates, t.Name)
	}
	for _, o := range objs {
		a, err := applier.Apply(ctx, o)
		if err != nil {
			return rep, fmt.Errorf("sandboxtest: deploy: %w", err)
		}
		fmt.Fprintf(opts.Log, "sandboxtest: deploy: %s %s\n", a.Ref(), a.Result)
		rep.Objects = append(rep.Objects, Object{Kind: a.Kind, Namespace: a.Namespace, Name: a.Name, Result: a.Result, State: staticState(a)})
	}

	checks := readinessChecks(cs, ext, opts, templates)
	var waitErr error
	if opts.Wait >= 0 {
		waitErr = waitReady(ctx, opts.Wait, opts.Log, checks)
	}
	// The report says what is true now: waited for, timed out or not waited.
	for i := range rep.Objects {
		if c, ok := checks[rep.Objects[i].Ref()]; ok {
			_, state := c(ctx)
			rep.Objects[i].State = state
		}
	}
	rep.Duration = time.Since(start)
	if waitErr != nil {
		return rep, waitErr
	}
	fmt.Fprintf(opts.Log, "sandboxtest: deploy: done in %s\n", rep.Duration.Round(100*time.Millisecond))
	return rep, nil
}

// checkOwned fails when any of objs exists without being sandboxtest's,
// naming each. Namespaces are exempt: deploy declares nothing in them but
// their existence.
func checkOwned(ctx context.Context, applier *kube.Applier, objs []runtime.Object) error {
	var theirs []string
	for _, o := range objs {
		if _, ok := o.(*corev1.Namespace); ok {
			continue
		}
		err := applier.CheckOwned(ctx, o)
		var no *kube.NotOwnedError
		switch {
		case errors.As(err, &no):
			theirs = append(theirs, no.Error())
		case err != nil:
			return fmt.Errorf("sandboxtest: deploy: %w", err)
		}
	}
	if len(theirs) == 0 {
		return nil
	}
	return fmt.Errorf("sandboxtest: deploy: applied nothing: deploying would take over %d object(s) sandboxtest did not create: %s; "+
		"deploy to another namespace (--namespace), rename or delete yours, or take them over with --force",
		len(theirs), strings.Join(theirs, "; "))
}

func (o *Options) defaults() error {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.RouterNamespace == "" {
		o.RouterNamespace = o.Namespace
	}
	if o.RouterImage == "" {
		o.RouterImage = DefaultRouterImage
	}
	if o.RouterReplicas == 0 {
		o.RouterReplicas = 1
	}
	if o.RouterReplicas < 0 || o.PoolReplicas < 0 {
		return fmt.Errorf("sandboxtest: deploy: replicas cannot be negative (router %d, pools %d)", o.RouterReplicas, o.PoolReplicas)
	}
	if o.Wait == 0 {
		o.Wait = DefaultWait
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return nil
}

// gatewayDefaults needs to know whether the cluster is the local one, which
// only the cluster can say; it still runs before anything is applied.
func (o *Options) gatewayDefaults(local bool) error {
	if o.Gateway == "" {
		return nil
	}
	if o.GatewayClass == "" {
		if !local {
			return fmt.Errorf("sandboxtest: deploy: Gateway %q needs a GatewayClass on this cluster (it is not sandboxtest's local cluster); pass --gateway-class", o.Gateway)
		}
		o.GatewayClass = kube.LocalGatewayClass
	}
	if o.GatewayPort == 0 {
		o.GatewayPort = 80
		if o.GatewayClass == kube.LocalGatewayClass {
			o.GatewayPort = 8080
		}
	}
	return nil
}

// loadTemplates reads Templates and TemplatePaths, the latter replacing the
// former by name.
func loadTemplates(opts Options) ([]kube.Template, error) {
	var base []kube.Template
	if opts.Templates != nil {
		var err error
		if base, err = kube.LoadTemplatesFS(opts.Templates); err != nil {
			return nil, err
		}
	}
	extra, err := kube.LoadTemplatePaths(opts.TemplatePaths)
	if err != nil {
		return nil, err
	}
	return kube.MergeTemplates(base, extra), nil
}

// routerLabels are on every router object; the app label is what the
// templates' NetworkPolicy admits (upstream's own manifests lack it).
func routerLabels() map[string]string {
	return map[string]string{
		kube.RouterAppLabel:           kube.RouterAppValue,
		"app.kubernetes.io/name":      kube.RouterDeployment,
		"app.kubernetes.io/component": kube.RouterDeployment,
		kube.LabelManagedBy:           kube.ManagedByValue,
	}
}

// routerSelector selects router pods; a Deployment's selector is immutable,
// so it must never change between versions of this code.
func routerSelector() map[string]string {
	return map[string]string{kube.RouterAppLabel: kube.RouterAppValue, "app.kubernetes.io/name": kube.RouterDeployment}
}

// routerClusterRole is shared by the routers of all namespaces; each
// namespace gets its own binding so deploying to one never unbinds another.
const routerClusterRole = "sandboxtest-sandbox-router"

// desiredObjects is everything Deploy applies, in order: a pod's
// ServiceAccount before the pod, a pool's template before the pool.
func desiredObjects(opts Options, templates []kube.Template) []runtime.Object {
	ns, rns := opts.Namespace, opts.RouterNamespace
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: rns, Labels: routerLabels()}
	}
	objs := []runtime.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}}
	if rns != ns {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rns}})
	}
	objs = append(objs,
		&corev1.ServiceAccount{ObjectMeta: meta(kube.RouterServiceAccount)},
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: routerClusterRole, Labels: routerLabels()},
			// The router's cache watches sandbox pods in every namespace.
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: routerClusterRole + "-" + rns, Labels: routerLabels()},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: routerClusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: kube.RouterServiceAccount, Namespace: rns}},
		},
		routerDeployment(opts),
		&corev1.Service{
			ObjectMeta: meta(kube.RouterService),
			Spec: corev1.ServiceSpec{
				Selector: routerSelector(),
				Ports:    []corev1.ServicePort{{Name: "proxy", Port: kube.RouterPort, TargetPort: intstr.FromString("proxy"), Protocol: corev1.ProtocolTCP}},
			},
		},
	)
	for _, t := range templates {
		tmpl := t.DeepCopy()
		tmpl.Namespace = ns
		if rns != ns {
			admitRouterFrom(tmpl, rns)
		}
		objs = append(objs, tmpl)
	}
	for _, t := range templates {
		replicas := opts.PoolReplicas
		objs = append(objs, &extv1beta1.SandboxWarmPool{
			ObjectMeta: metav1.ObjectMeta{Name: t.Name, Namespace: ns, Labels: map[string]string{kube.LabelManagedBy: kube.ManagedByValue}},
			Spec:       extv1beta1.SandboxWarmPoolSpec{Replicas: &replicas, TemplateRef: extv1beta1.SandboxTemplateRef{Name: t.Name}},
		})
	}
	if opts.Gateway != "" {
		objs = append(objs, gatewayObjects(opts)...)
	}
	return objs
}

// admitRouterFrom makes a template's ingress rules that admit the router
// pods (a podSelector alone means "in the sandbox's namespace") admit them
// from the router's namespace instead.
func admitRouterFrom(tmpl *extv1beta1.SandboxTemplate, routerNS string) {
	if tmpl.Spec.NetworkPolicy == nil {
		return
	}
	for i := range tmpl.Spec.NetworkPolicy.Ingress {
		from := tmpl.Spec.NetworkPolicy.Ingress[i].From
		for j := range from {
			p := &from[j]
			if p.PodSelector != nil && p.NamespaceSelector == nil && p.IPBlock == nil &&
				p.PodSelector.MatchLabels[kube.RouterAppLabel] == kube.RouterAppValue {
				p.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: routerNS}}
			}
		}
	}
}

func routerDeployment(opts Options) *appsv1.Deployment {
	replicas := opts.RouterReplicas
	yes, no := true, false
	probe := func(path string, delay, period int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("healthz")}},
			InitialDelaySeconds: delay, PeriodSeconds: period, FailureThreshold: 3,
		}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: kube.RouterDeployment, Namespace: opts.RouterNamespace, Labels: routerLabels()},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: routerSelector()},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: routerLabels()},
				Spec: corev1.PodSpec{
					ServiceAccountName: kube.RouterServiceAccount,
					Containers: []corev1.Container{{
						Name:  kube.RouterDeployment,
						Image: opts.RouterImage,
						// The pod cache resolves sandboxes by name when a
						// client sends no pod IP (upstream's deploy/ default).
						Args: []string{"--cache-enabled=true"},
						Ports: []corev1.ContainerPort{
							{Name: "proxy", ContainerPort: kube.RouterPort, Protocol: corev1.ProtocolTCP},
							{Name: "healthz", ContainerPort: kube.RouterProbePort, Protocol: corev1.ProtocolTCP},
							{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
						},
						ReadinessProbe: probe("/readyz", 0, 5),
						LivenessProbe:  probe("/healthz", 5, 10),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{"cpu": resource.MustParse("100m"), "memory": resource.MustParse("128Mi")},
							Limits:   corev1.ResourceList{"cpu": resource.MustParse("1"), "memory": resource.MustParse("512Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: &no,
							ReadOnlyRootFilesystem:   &yes,
							RunAsNonRoot:             &yes,
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
					}},
				},
			},
		},
	}
}

// gatewayObjects is a Gateway with one HTTP listener and an HTTPRoute
// sending everything to the router's Service, both beside the router.
func gatewayObjects(opts Options) []runtime.Object {
	port := gatewayv1.PortNumber(kube.RouterPort)
	lbls := map[string]string{kube.LabelGateway: "true", kube.LabelManagedBy: kube.ManagedByValue}
	gw := &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: opts.Gateway, Namespace: opts.RouterNamespace, Labels: lbls},
		Spec: gatewayv1.GatewaySpec{
			GatewayClassName: gatewayv1.ObjectName(opts.GatewayClass),
			Listeners: []gatewayv1.Listener{{
				Name: "http", Port: gatewayv1.PortNumber(opts.GatewayPort), Protocol: gatewayv1.HTTPProtocolType,
			}},
		},
	}
	route := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: GatewayRouteName(opts.Gateway), Namespace: opts.RouterNamespace, Labels: lbls},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: gatewayv1.ObjectName(opts.Gateway)}}},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(kube.RouterService), Port: &port},
			}}}}},
		},
	}
	return []runtime.Object{gw, route}
}

// GatewayRouteName is the HTTPRoute Deploy creates for a Gateway.
func GatewayRouteName(gateway string) string { return gateway + "-" + kube.RouterDeployment }

// staticState is the state of objects nobody waits for.
func staticState(a kube.Applied) string {
	if a.Kind != "Gateway" {
		return "-"
	}
	for _, c := range conditions(a.Object) {
		if c["type"] == string(gatewayv1.GatewayConditionProgrammed) {
			return fmt.Sprintf("Programmed=%v (not waited for)", c["status"])
		}
	}
	return "not programmed yet (not waited for)"
}

func conditions(u *unstructured.Unstructured) []map[string]any {
	if u == nil {
		return nil
	}
	list, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var out []map[string]any
	for _, c := range list {
		if m, ok := c.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// readiness reports whether an object is ready and its state in words.
type readiness func(ctx context.Context) (ready bool, state string)

// readinessChecks are keyed by Object.Ref: the router Deployment
// (ready with one Ready pod) and each pool (ready replicas == replicas).
func readinessChecks(cs kubernetes.Interface, ext extclient.Interface, opts Options, templates []kube.Template) map[string]readiness {
	ns, rns := opts.Namespace, opts.RouterNamespace
	checks := map[string]readiness{}
	checks[Object{Kind: "Deployment", Namespace: rns, Name: kube.RouterDeployment}.Ref()] = func(ctx context.Context) (bool, string) {
		return routerReady(ctx, cs, rns, opts.RouterReplicas)
	}
	for _, t := range templates {
		name := t.Name
		checks[Object{Kind: "SandboxWarmPool", Namespace: ns, Name: name}.Ref()] = func(ctx context.Context) (bool, string) {
			return poolReady(ctx, ext, ns, name)
		}
	}
	return checks
}

// routerReady finds router pods by the Deployment's selector (Services have
// no endpoints on the local cluster) and is ready when one is Ready.
func routerReady(ctx context.Context, cs kubernetes.Interface, ns string, want int32) (bool, string) {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(routerSelector()).String()})
	if err != nil {
		return false, "listing router pods: " + err.Error()
	}
	ready, notReady := 0, ""
	for i := range pods.Items {
		if kube.PodReady(&pods.Items[i]) {
			ready++
		} else if notReady == "" {
			notReady = "pod " + pods.Items[i].Name + " " + kube.PodState(&pods.Items[i])
		}
	}
	state := fmt.Sprintf("%d/%d ready", ready, want)
	switch {
	case len(pods.Items) == 0:
		state += "; no router pod yet"
	case ready == 0:
		state += "; " + notReady
	}
	return ready > 0, state
}

// poolReady is ready when the controller has seen the pool's spec and
// reports as many ready sandboxes as it asks for.
func poolReady(ctx context.Context, ext extclient.Interface, ns, name string) (bool, string) {
	p, err := ext.ExtensionsV1beta1().SandboxWarmPools(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	want := int32(1) // the CRD's default
	if p.Spec.Replicas != nil {
		want = *p.Spec.Replicas
	}
	state := fmt.Sprintf("%d/%d ready", p.Status.ReadyReplicas, want)
	if p.Status.ObservedGeneration < p.Generation {
		return false, state + fmt.Sprintf("; the controller has not seen generation %d yet (is the agent-sandbox controller running with --extensions?)", p.Generation)
	}
	return p.Status.ReadyReplicas == want, state
}

// waitReady polls every check until all are ready, logging what is still
// pending every 10s; on timeout the error names each and its last state.
func waitReady(ctx context.Context, timeout time.Duration, log io.Writer, checks map[string]readiness) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pending := map[string]string{} // ref → last state
	for ref := range checks {
		pending[ref] = "not checked yet"
	}
	lastLog := time.Now()
	for {
		for ref := range pending {
			ready, state := checks[ref](ctx)
			switch {
			case ready:
				delete(pending, ref)
			case ctx.Err() == nil: // not the check's own failure at the deadline
				pending[ref] = state
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Since(lastLog) >= 10*time.Second {
			for _, ref := range sortedRefs(pending) {
				fmt.Fprintf(log, "sandboxtest: deploy: still waiting for %s (last state: %s)\n", ref, pending[ref])
			}
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			var what []string
			for _, ref := range sortedRefs(pending) {
				what = append(what, fmt.Sprintf("%s (last state: %s)", ref, pending[ref]))
			}
			why := fmt.Sprintf("not ready after %s", timeout)
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why = "interrupted while waiting"
			}
			return fmt.Errorf("sandboxtest: deploy: %s: %s", why, strings.Join(what, "; "))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func sortedRefs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
