package localcluster

import (
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// What the local cluster leaves out or tunes to stay small when idle (issue
// 12: 840 MB resident with the router and one sandbox, kube-apiserver alone
// 450 MB). BENCHMARKS.md has the figures and the command that measures them.
// Besides what is below, etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler are one executable (kubeMain), so the code they run is
// resident once, and kube-scheduler runs in kube-controller-manager's
// process: even so, 40 % of the idle cluster's memory is the code pages of
// its executables, which no flag shrinks.

// apiGroupsOff is kube-apiserver's --runtime-config: API groups that neither
// sandboxtest, agent-sandbox nor the router use. Jobs, CronJobs, HPAs and
// CertificateSigningRequests are not served; node.k8s.io (RuntimeClass, read
// by an admission plugin) and resource.k8s.io (the scheduler waits for its
// informers) stay.
var apiGroupsOff = strings.Join([]string{
	"autoscaling/v1=false",
	"autoscaling/v2=false",
	"batch/v1=false",
	"certificates.k8s.io/v1=false",
	"flowcontrol.apiserver.k8s.io/v1=false", // --enable-priority-and-fairness=false
}, ",")

// kcmControllers is kube-controller-manager's --controllers: the default set
// without the controllers of the groups in apiGroupsOff (they would only log
// failed lists).
var kcmControllers = strings.Join([]string{
	"*",
	"-cronjob-controller",
	"-job-controller",
	"-ttl-after-finished-controller",
	"-horizontal-pod-autoscaler-controller",
	"-certificatesigningrequest-approving-controller",
	"-certificatesigningrequest-cleaner-controller",
	"-certificatesigningrequest-signing-controller",
	"-kube-apiserver-serving-clustertrustbundle-publisher-controller",
	"-podcertificaterequest-cleaner-controller",
}, ",")

// uncachedResources are the built-in resources of Kubernetes v1.36, by API
// group, for which kube-apiserver keeps no watch cache
// (--watch-cache-sizes=R#0): all but pods. The caches of every built-in
// resource held about 45 MB at idle; without any cache, each watch of every
// client is an etcd watch of its own, and each pod or claim event is decoded
// once per watcher, which cost a cold claim about 10 ms back to back and 5
// ms paced. The pods' cache and the custom resources' (sandboxes, claims,
// templates, pools and the Gateway API's: kube-apiserver caches every
// custom resource while the watch cache is on) cost nothing measurable
// (BENCHMARKS.md, "Watch caches for pods and custom resources only").
// TestControlPlane checks that no other resource gets a cache, so a new
// built-in resource in a later Kubernetes is found there.
var uncachedResources = map[string][]string{
	"": {
		"configmaps", "endpoints", "events", "limitranges", "namespaces",
		"nodes", "persistentvolumeclaims", "persistentvolumes",
		"podtemplates", "replicationcontrollers", "resourcequotas",
		"secrets", "serviceaccounts", "services",
	},
	"admissionregistration.k8s.io": {
		"mutatingadmissionpolicies", "mutatingadmissionpolicybindings",
		"mutatingwebhookconfigurations", "validatingadmissionpolicies",
		"validatingadmissionpolicybindings",
		"validatingwebhookconfigurations",
	},
	"apiextensions.k8s.io":   {"customresourcedefinitions"},
	"apiregistration.k8s.io": {"apiservices"},
	"apps": {
		"controllerrevisions", "daemonsets", "deployments", "replicasets",
		"statefulsets",
	},
	"coordination.k8s.io": {"leases"},
	"discovery.k8s.io":    {"endpointslices"},
	"events.k8s.io":       {"events"},
	"networking.k8s.io": {
		"ingressclasses", "ingresses", "ipaddresses", "networkpolicies",
		"servicecidrs",
	},
	"node.k8s.io": {"runtimeclasses"},
	"policy":      {"poddisruptionbudgets"},
	"rbac.authorization.k8s.io": {
		"clusterrolebindings", "clusterroles", "rolebindings", "roles",
	},
	"resource.k8s.io": {
		"deviceclasses", "resourceclaims", "resourceclaimtemplates",
		"resourceslices",
	},
	"scheduling.k8s.io": {"priorityclasses"},
	"storage.k8s.io": {
		"csidrivers", "csinodes", "csistoragecapacities", "storageclasses",
		"volumeattachments", "volumeattributesclasses",
	},
}

// watchCacheSizes is uncachedResources as kube-apiserver's flag value.
func watchCacheSizes() string {
	var out []string
	for group, resources := range uncachedResources {
		for _, r := range resources {
			if group != "" {
				r += "." + group
			}
			out = append(out, r+"#0")
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// componentEnv is the Go runtime tuning of a control plane component. The
// default GOGC=100 lets a heap grow to twice its live size before a
// collection; at idle that slack is much of a component's resident memory.
// GOGC=50 costs some CPU per allocation, which the small heaps of etcd and
// the controllers do not notice. kube-apiserver starts at the default: at
// GOGC=50 from the start the cluster took about 5 s longer to start on 2
// cores, its collector busy while the CRDs are installed. It goes to
// apiServerIdleGOGC once the control plane is up (apiServerIdle).
func componentEnv(name string) []string {
	if name == compAPIServer {
		return []string{"SANDBOXTEST_GOGC_ON_SIGUSR1=" + strconv.Itoa(apiServerIdleGOGC)}
	}
	return []string{"GOGC=50"}
}

// apiServerIdleGOGC is kube-apiserver's GC percent after the start: its
// live heap is 125 to 150 MB (mostly the CRDs' schemas), which the default
// lets grow to twice that.
const apiServerIdleGOGC = 50

// apiServerIdle tells kube-apiserver the busy start is over: on SIGUSR1 the
// sandboxtest-built executable (kubeMain) sets its GC percent to
// apiServerIdleGOGC and returns the freed heap to the system. An upstream
// kube-apiserver from SANDBOXTEST_BIN_DIR ignores the signal, as every Go
// program does that does not ask for it.
func (c *ControlPlane) apiServerIdle() {
	if p := c.proc(compAPIServer); p != nil && !p.Exited() {
		_ = syscall.Kill(p.Pid(), syscall.SIGUSR1)
	}
}

// nodeGOGC is the GC percent of the serving process (`local serve`: the
// process node, the Gateway and the volume provisioner), as componentEnv's
// for the controllers; a GOGC in its environment wins.
const nodeGOGC = 50

func tuneServingProcess() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(nodeGOGC)
	}
}
