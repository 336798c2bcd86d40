package localcluster

import "strings"

// What the local cluster leaves out or tunes to stay small when idle (issue
// 12: 840 MB resident with the router and one sandbox, kube-apiserver alone
// 450 MB). BENCHMARKS.md has the figures and the command that measures them.

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

// componentEnv is the Go runtime tuning of a control plane component. The
// default GOGC=100 lets a heap grow to twice its live size before a
// collection; at idle that slack is much of a component's resident memory.
// GOGC=50 costs some CPU per allocation, which the small heaps of etcd and
// the controllers do not notice. kube-apiserver keeps the default: with
// GOGC=50 (or a GOMEMLIMIT near its 125 to 150 MB live heap) it used 55 MB
// less at idle but the cluster took about 5 s longer to start on 2 cores,
// its collector busy while the CRDs are installed.
func componentEnv(name string) []string {
	if name == compAPIServer {
		return nil
	}
	return []string{"GOGC=50"}
}
