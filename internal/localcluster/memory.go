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
// collection; at idle that slack is most of a component's resident memory
// (kube-apiserver: 125 to 155 MB live, 380 MB anonymous). GOGC=50 costs some
// CPU per allocation, which a test cluster has to spare; GOMEMLIMIT is not
// set: a limit near the live heap makes the collector run back to back.
func componentEnv(string) []string {
	return []string{"GOGC=50"}
}
