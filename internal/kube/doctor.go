package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// Check is one row of `sandboxtest-setup doctor`.
type Check struct {
	Name string
	OK   bool
	Seen string // what was found
	Fix  string // the command that fixes a failed check
}

// DoctorOptions select what doctor looks at.
type DoctorOptions struct {
	Namespace   string   // default "default"
	Templates   []string // templates that must exist with a pool; empty: every template in Namespace
	Gateway     string   // [ns/]name of a Gateway whose address to check; empty: none
	ContextName string   // kube context, for Kind detection
	Timeout     time.Duration
}

// agentSandboxCRDs are the CRDs the controller serves, all at v1beta1.
var agentSandboxCRDs = []string{
	"sandboxes.agents.x-k8s.io",
	"sandboxclaims.extensions.agents.x-k8s.io",
	"sandboxtemplates.extensions.agents.x-k8s.io",
	"sandboxwarmpools.extensions.agents.x-k8s.io",
}

// Doctor checks, in order, what a sandboxtest suite needs from a cluster. A
// row that cannot run because an earlier one failed is not reported.
func Doctor(ctx context.Context, cfg *rest.Config, o DoctorOptions) []Check {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	deploy := "sandboxtest-setup deploy --namespace " + o.Namespace
	var rows []Check
	add := func(c Check) bool { rows = append(rows, c); return c.OK }

	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		add(Check{Name: "API reachable", Seen: err.Error(), Fix: "check the kubeconfig, or start a local cluster: sandboxtest-setup local up"})
		return rows
	}
	v, err := cs.Discovery().ServerVersion()
	if !add(apiCheck(cfg.Host, v, err)) {
		return rows
	}
	if !add(crdCheck(ctx, cfg)) {
		return rows
	}
	kind, why, _ := DetectCluster(ctx, cs, o.ContextName)
	add(Check{Name: "cluster kind", OK: true, Seen: fmt.Sprintf("%s (%s)", kind, why)})
	add(controllerCheck(ctx, cfg, o.Namespace, o.Timeout))
	add(routerCheck(ctx, cs, o.Namespace, deploy))
	rows = append(rows, templateChecks(ctx, cfg, o, deploy)...)
	if o.Gateway != "" {
		add(gatewayCheck(ctx, cfg, o.Namespace, o.Gateway))
	}
	return rows
}

func apiCheck(host string, v fmt.Stringer, err error) Check {
	c := Check{Name: "API reachable"}
	if err != nil {
		c.Seen = fmt.Sprintf("%s: %v", host, firstLine(err.Error()))
		c.Fix = "check KUBECONFIG, or start a local cluster: sandboxtest-setup local up"
		return c
	}
	c.OK, c.Seen = true, fmt.Sprintf("%s (Kubernetes %s)", host, v)
	return c
}

func crdCheck(ctx context.Context, cfg *rest.Config) Check {
	c := Check{Name: "agent-sandbox CRDs", Fix: "sandboxtest-setup install-controller --version v0.5.6"}
	ac, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		c.Seen = err.Error()
		return c
	}
	var missing []string
	for _, name := range agentSandboxCRDs {
		crd, err := ac.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			missing = append(missing, name)
			continue
		}
		served := false
		for _, v := range crd.Spec.Versions {
			served = served || (v.Name == "v1beta1" && v.Served)
		}
		if !served {
			missing = append(missing, name+" (no v1beta1)")
		}
	}
	if len(missing) > 0 {
		c.Seen = "missing: " + strings.Join(missing, ", ")
		return c
	}
	c.OK, c.Seen = true, "4 CRDs serve v1beta1"
	return c
}

// controllerCheck claims from a throwaway template and pool: only a
// controller running with --extensions turns the claim into a Sandbox.
func controllerCheck(ctx context.Context, cfg *rest.Config, ns string, timeout time.Duration) Check {
	c := Check{Name: "controller with extensions",
		Fix: "run agent-sandbox-controller with --extensions: sandboxtest-setup install-controller --version v0.5.6"}
	ext, err := extclient.NewForConfig(cfg)
	if err != nil {
		c.Seen = err.Error()
		return c
	}
	name := "sandboxtest-doctor-" + rand.String(5)
	meta := metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{LabelCreatedBy: CreatedByValue, LabelManagedBy: ManagedByValue}}
	api := ext.ExtensionsV1beta1()
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = api.SandboxClaims(ns).Delete(ctx, name, metav1.DeleteOptions{})
		_ = api.SandboxWarmPools(ns).Delete(ctx, name, metav1.DeleteOptions{})
		_ = api.SandboxTemplates(ns).Delete(ctx, name, metav1.DeleteOptions{})
	}
	defer cleanup()
	tmpl := &extv1beta1.SandboxTemplate{ObjectMeta: meta, Spec: extv1beta1.SandboxTemplateSpec{
		SandboxBlueprint: sandboxv1beta1.SandboxBlueprint{PodTemplate: sandboxv1beta1.PodTemplate{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "pause", Image: "registry.k8s.io/pause:3.10"}},
		}}},
	}}
	if _, err := api.SandboxTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		c.Seen = "cannot create a throwaway SandboxTemplate: " + firstLine(err.Error())
		return c
	}
	pool := &extv1beta1.SandboxWarmPool{ObjectMeta: meta, Spec: extv1beta1.SandboxWarmPoolSpec{
		Replicas: new(int32), TemplateRef: extv1beta1.SandboxTemplateRef{Name: name}}}
	if _, err := api.SandboxWarmPools(ns).Create(ctx, pool, metav1.CreateOptions{}); err != nil {
		c.Seen = "cannot create a throwaway SandboxWarmPool: " + firstLine(err.Error())
		return c
	}
	claim := &extv1beta1.SandboxClaim{ObjectMeta: meta, Spec: extv1beta1.SandboxClaimSpec{WarmPoolRef: extv1beta1.SandboxWarmPoolRef{Name: name}}}
	if _, err := api.SandboxClaims(ns).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		c.Seen = "cannot create a throwaway SandboxClaim: " + firstLine(err.Error())
		return c
	}
	start := time.Now()
	deadline := start.Add(timeout)
	for time.Now().Before(deadline) {
		got, err := api.SandboxClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && got.Status.SandboxStatus.Name != "" {
			c.OK, c.Seen = true, fmt.Sprintf("a throwaway claim got Sandbox %s in %s (cleaned up)", got.Status.SandboxStatus.Name, time.Since(start).Round(time.Millisecond))
			return c
		}
		select {
		case <-ctx.Done():
			c.Seen = ctx.Err().Error()
			return c
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.Seen = fmt.Sprintf("a throwaway claim got no Sandbox within %s: the controller is not running, or runs without --extensions", timeout)
	return c
}

// routerCheck finds the router Deployment Ready and its Service selecting
// Ready pods, by the Service's selector: the local cluster has no EndpointSlices.
func routerCheck(ctx context.Context, cs kubernetes.Interface, ns, deploy string) Check {
	c := Check{Name: "sandbox-router", Fix: deploy}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, RouterDeployment, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		c.Seen = fmt.Sprintf("Deployment %s/%s not found", ns, RouterDeployment)
		return c
	} else if err != nil {
		c.Seen = firstLine(err.Error())
		return c
	}
	if d.Status.ReadyReplicas == 0 {
		c.Seen = fmt.Sprintf("Deployment %s/%s has no Ready replica (%d/%d)", ns, RouterDeployment, d.Status.ReadyReplicas, d.Status.Replicas)
		c.Fix = fmt.Sprintf("kubectl -n %s describe deployment %s; kubectl -n %s logs deployment/%s", ns, RouterDeployment, ns, RouterDeployment)
		return c
	}
	svc, err := cs.CoreV1().Services(ns).Get(ctx, RouterService, metav1.GetOptions{})
	if err != nil {
		c.Seen = fmt.Sprintf("Service %s/%s: %s", ns, RouterService, firstLine(err.Error()))
		return c
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		c.Seen = firstLine(err.Error())
		return c
	}
	var ready []string
	for _, p := range pods.Items {
		if len(svc.Spec.Selector) > 0 && p.DeletionTimestamp == nil && PodReady(&p) {
			ready = append(ready, p.Name+" "+p.Status.PodIP)
		}
	}
	if len(ready) == 0 {
		c.Seen = fmt.Sprintf("Service %s selects no Ready pod (selector %v)", RouterService, svc.Spec.Selector)
		return c
	}
	c.OK, c.Seen = true, fmt.Sprintf("Deployment %d/%d Ready; %s selects %s", d.Status.ReadyReplicas, d.Status.Replicas, RouterService, strings.Join(ready, ", "))
	return c
}

// templateChecks reports each wanted template and the pool that serves it.
func templateChecks(ctx context.Context, cfg *rest.Config, o DoctorOptions, deploy string) []Check {
	ext, err := extclient.NewForConfig(cfg)
	if err != nil {
		return []Check{{Name: "templates", Seen: err.Error()}}
	}
	tl, err := ext.ExtensionsV1beta1().SandboxTemplates(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return []Check{{Name: "templates", Seen: firstLine(err.Error())}}
	}
	pl, err := ext.ExtensionsV1beta1().SandboxWarmPools(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return []Check{{Name: "templates", Seen: firstLine(err.Error())}}
	}
	have := map[string]bool{}
	var names []string
	for _, t := range tl.Items {
		if t.Labels[LabelCreatedBy] == CreatedByValue && strings.HasPrefix(t.Name, "sandboxtest-doctor-") {
			continue // another doctor's throwaway
		}
		have[t.Name] = true
		names = append(names, t.Name)
	}
	sort.Strings(names)
	wanted := o.Templates
	if len(wanted) == 0 {
		wanted = names
	}
	if len(wanted) == 0 {
		return []Check{{Name: "templates", Seen: "no SandboxTemplate in namespace " + o.Namespace, Fix: deploy}}
	}
	var rows []Check
	for _, name := range wanted {
		c := Check{Name: "template " + name, Fix: deploy}
		if !have[name] {
			c.Seen = fmt.Sprintf("not found in namespace %s (templates there: %v)", o.Namespace, names)
			rows = append(rows, c)
			continue
		}
		var pool *extv1beta1.SandboxWarmPool
		for i := range pl.Items {
			if pl.Items[i].Spec.TemplateRef.Name == name && (pool == nil || pl.Items[i].Status.ReadyReplicas > pool.Status.ReadyReplicas) {
				pool = &pl.Items[i]
			}
		}
		if pool == nil {
			c.Seen = "no SandboxWarmPool refers to it (claims need a pool)"
			rows = append(rows, c)
			continue
		}
		want := int32(1)
		if pool.Spec.Replicas != nil {
			want = *pool.Spec.Replicas
		}
		c.OK, c.Seen = true, fmt.Sprintf("pool %s: %d/%d ready", pool.Name, pool.Status.ReadyReplicas, want)
		rows = append(rows, c)
	}
	return rows
}

// gatewayCheck finds the named Gateway Programmed with an address.
func gatewayCheck(ctx context.Context, cfg *rest.Config, ns, ref string) Check {
	if i := strings.IndexByte(ref, '/'); i >= 0 {
		ns, ref = ref[:i], ref[i+1:]
	}
	c := Check{Name: "gateway " + ns + "/" + ref, Fix: fmt.Sprintf("sandboxtest-setup deploy --namespace %s --gateway %s", ns, ref)}
	gc, err := gwclient.NewForConfig(cfg)
	if err != nil {
		c.Seen = err.Error()
		return c
	}
	g, err := gc.GatewayV1().Gateways(ns).Get(ctx, ref, metav1.GetOptions{})
	if err != nil {
		c.Seen = firstLine(err.Error())
		return c
	}
	prog := meta.FindStatusCondition(g.Status.Conditions, string(gwv1.GatewayConditionProgrammed))
	if len(g.Status.Addresses) == 0 || prog == nil || prog.Status != metav1.ConditionTrue {
		c.Seen = "no address yet"
		if prog != nil {
			c.Seen += fmt.Sprintf(" (Programmed=%s %s: %s)", prog.Status, prog.Reason, prog.Message)
		}
		c.Fix = "check the Gateway controller of class " + string(g.Spec.GatewayClassName) + ": kubectl -n " + ns + " describe gateway " + ref
		return c
	}
	var ports []string
	for _, l := range g.Spec.Listeners {
		ports = append(ports, fmt.Sprintf("%s:%d", l.Protocol, l.Port))
	}
	c.OK, c.Seen = true, fmt.Sprintf("address %s, listeners %s", g.Status.Addresses[0].Value, strings.Join(ports, " "))
	return c
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
