package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/icmd"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// TestGCCommand runs gc against the shared local cluster: the flags reach
// the sweep, each object and a summary are printed, failures exit non-zero.
// Its objects carry run ids r1 and r2, which no other test uses.
func TestGCCommand(t *testing.T) {
	ctx := context.Background()
	kc := localCluster(t).kubeconfig
	admin, err := clientcmd.BuildConfigFromFlags("", kc)
	assert.NilError(t, err)
	cs := kubernetes.NewForConfigOrDie(admin)
	x := extclient.NewForConfigOrDie(admin).ExtensionsV1beta1()
	other, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gc-other"}}, metav1.CreateOptions{})
	assert.NilError(t, err)

	ours := func(run string) map[string]string {
		return map[string]string{kube.LabelCreatedBy: kube.CreatedByValue, kube.LabelRunID: run, kube.LabelTest: "TestCLI"}
	}
	for _, cl := range []struct {
		ns, name, pool string
		labels         map[string]string
	}{
		{"default", "old-1", "pool", ours("r1")},
		{"default", "old-2", "elsewhere", ours("r1")},
		{"default", "unlabelled", "elsewhere", nil},
		{"default", "other-run", "elsewhere", ours("r2")},
		{other.Name, "far", "elsewhere", ours("r1")},
	} {
		_, err := x.SandboxClaims(cl.ns).Create(ctx, &extv1beta1.SandboxClaim{
			ObjectMeta: metav1.ObjectMeta{Name: cl.name, Labels: cl.labels},
			Spec:       extv1beta1.SandboxClaimSpec{WarmPoolRef: extv1beta1.SandboxWarmPoolRef{Name: cl.pool}},
		}, metav1.CreateOptions{})
		assert.NilError(t, err)
	}
	_, err = x.SandboxWarmPools("default").Create(ctx, &extv1beta1.SandboxWarmPool{
		ObjectMeta: metav1.ObjectMeta{Name: "pool", Labels: map[string]string{
			kube.LabelCreatedBy: kube.CreatedByValue, kube.LabelColdPool: "true", kube.LabelRunID: "r1"}},
		Spec: extv1beta1.SandboxWarmPoolSpec{Replicas: new(int32), TemplateRef: extv1beta1.SandboxTemplateRef{Name: "tmpl"}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	claimExists := func(ns, name string) bool {
		_, err := x.SandboxClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}

	out, errOut, code := cli(t, "gc", "--kubeconfig", kc, "--dry-run", "--older-than", "0", "--run-id", "r1")
	assert.Equal(t, code, 0, errOut)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	assert.Assert(t, is.Len(lines, 4), out)
	assert.Check(t, strings.HasPrefix(lines[0], "would delete claim default/old-1 (run r1, test TestCLI, age "), lines[0])
	assert.Check(t, strings.HasPrefix(lines[1], "would delete claim default/old-2 (run r1, test TestCLI, age "), lines[1])
	assert.Check(t, strings.HasPrefix(lines[2], "would delete cold pool default/pool (run r1, age "), lines[2])
	assert.Check(t, is.Equal(lines[3], `would delete 2 claims and 1 cold pool in namespace "default", run r1`))
	assert.Check(t, claimExists("default", "old-1") && claimExists("default", "old-2"), "the dry run deleted claims")

	// The default age spares what was just created (and the pool its claim uses).
	out, errOut, code = cli(t, "gc", "--kubeconfig", kc, "--run-id", "r1")
	assert.Equal(t, code, 0, errOut)
	assert.Check(t, is.Equal(out, `deleted 0 claims and 0 cold pools in namespace "default", run r1 (kept: 2 younger than 1h, 1 cold pool in use)`+"\n"))

	// -o json: the same sweep as a document, nothing else on stdout.
	res := sandboxtestSetup(nil, "gc", "--kubeconfig", kc, "--dry-run", "--older-than", "0", "--run-id", "r1", "-o", "json")
	res.Assert(t, icmd.Success)
	var doc GCReport
	assert.NilError(t, json.Unmarshal([]byte(res.Stdout()), &doc), res.Stdout())
	assert.Check(t, is.Equal(doc.TypeMeta, typeMeta("GCReport")))
	assert.Check(t, is.Equal(doc.Namespace, "default"))
	assert.Check(t, !doc.AllNamespaces && doc.DryRun)
	assert.Check(t, is.Equal(doc.RunID, "r1"))
	assert.Check(t, is.Equal(doc.OlderThanSeconds, 0.0))
	assert.Check(t, is.Equal(doc.Summary, `would delete 2 claims and 1 cold pool in namespace "default", run r1`))
	var names []string
	for _, o := range doc.Deleted {
		names = append(names, o.Kind+" "+o.Namespace+"/"+o.Name+" "+o.RunID+" "+o.Test)
		assert.Check(t, o.AgeSeconds >= 0)
	}
	assert.Check(t, is.DeepEqual(names, []string{"claim default/old-1 r1 TestCLI", "claim default/old-2 r1 TestCLI", "cold pool default/pool r1 "}))
	assert.Check(t, is.Contains(res.Stderr(), "would delete claim default/old-1"), "the per-object lines go to stderr")

	out, errOut, code = cli(t, "gc", "--kubeconfig", kc, "--older-than", "0", "--run-id", "r1")
	assert.Equal(t, code, 0, errOut)
	assert.Check(t, is.Contains(out, "deleted claim default/old-1 (run r1, test TestCLI, age "))
	assert.Check(t, is.Contains(out, "deleted cold pool default/pool (run r1, age "))
	assert.Check(t, is.Contains(out, `deleted 2 claims and 1 cold pool in namespace "default", run r1`+"\n"))
	assert.Check(t, !claimExists("default", "old-1") && !claimExists("default", "old-2"))
	assert.Check(t, claimExists("default", "unlabelled") && claimExists("default", "other-run"))
	assert.Check(t, claimExists(other.Name, "far"), "a one-namespace gc reached namespace %s", other.Name)

	out, errOut, code = cli(t, "gc", "--kubeconfig", kc, "--older-than", "0", "--run-id", "r1", "-A")
	assert.Equal(t, code, 0, errOut)
	assert.Check(t, is.Contains(out, "deleted claim gc-other/far (run r1, test TestCLI, age "))
	assert.Check(t, is.Contains(out, "deleted 1 claim and 0 cold pools in all namespaces, run r1\n"))
	assert.Check(t, !claimExists(other.Name, "far"))

	// A user who may list but not delete: each failure printed, the exit code says so.
	limited := gcListOnlyKubeconfig(t, cs, admin, kc, "gc-cli-lister")
	out, errOut, code = cli(t, "gc", "--kubeconfig", limited, "--older-than", "0", "--run-id", "r2")
	t.Logf("gc as a list-only user:\n%s%s", out, errOut)
	assert.Check(t, is.Equal(code, exitFailed))
	assert.Check(t, is.Contains(out, "failed to delete claim default/other-run (run r2, test TestCLI, age "))
	assert.Check(t, is.Contains(out, `deleted 0 claims and 0 cold pools in namespace "default", run r2; 1 failed`+"\n"))
	assert.Check(t, is.Contains(errOut, "sandboxtest-setup: deleting claim default/other-run: "))
	assert.Check(t, is.Contains(errOut, "forbidden"))
	assert.Check(t, claimExists("default", "other-run"))
}

// gcListOnlyKubeconfig writes a kubeconfig that impersonates user, who may
// list claims and pools everywhere and delete nothing, and waits for RBAC to say so.
func gcListOnlyKubeconfig(t *testing.T, cs kubernetes.Interface, admin *rest.Config, adminKubeconfig, user string) string {
	t.Helper()
	ctx := context.Background()
	_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{extv1beta1.GroupVersion.Group}, Resources: []string{"sandboxclaims", "sandboxwarmpools"}, Verbs: []string{"list"}}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)

	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	x := extclient.NewForConfigOrDie(cfg).ExtensionsV1beta1()
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if _, err := x.SandboxClaims("default").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return poll.Continue("list as %s: %v", user, err)
		}
		return poll.Success()
	}, poll.WithTimeout(30*time.Second), poll.WithDelay(100*time.Millisecond))

	kc, err := clientcmd.LoadFromFile(adminKubeconfig)
	assert.NilError(t, err)
	kc.AuthInfos[kc.Contexts[kc.CurrentContext].AuthInfo].Impersonate = user
	path := filepath.Join(t.TempDir(), "kubeconfig")
	assert.NilError(t, clientcmd.WriteToFile(*kc, path))
	return path
}

func TestGCUnreachableCluster(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	server := "https://" + l.Addr().String()
	l.Close() // nothing listens there any more
	kc := clientcmdapi.NewConfig()
	kc.Clusters["gone"] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
	kc.AuthInfos["gone"] = &clientcmdapi.AuthInfo{Token: "x"}
	kc.Contexts["gone"] = &clientcmdapi.Context{Cluster: "gone", AuthInfo: "gone"}
	kc.CurrentContext = "gone"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	assert.NilError(t, clientcmd.WriteToFile(*kc, path))

	for _, args := range [][]string{
		{"gc", "--kubeconfig", path},
		{"gc", "--all-namespaces", "--dry-run"}, // through $KUBECONFIG
	} {
		t.Setenv("KUBECONFIG", path)
		out, errOut, code := cli(t, args...)
		assert.Check(t, is.Equal(code, exitUnreachable), "%v", args)
		assert.Check(t, is.Equal(out, ""), "%v", args)
		assert.Check(t, is.Equal(strings.Count(errOut, "\n"), 1), "not one line: %q", errOut)
		assert.Check(t, is.Contains(errOut, "cannot reach the cluster at "+server))
		assert.Check(t, is.Contains(errOut, "sandboxtest-setup local up"))
	}
}

func TestGCWithoutKubeconfig(t *testing.T) {
	home := t.TempDir() // no ~/.kube/config
	sandboxtestSetup([]string{"KUBECONFIG=", "HOME=" + home}, "gc").Assert(t, icmd.Expected{ExitCode: exitUnreachable, Out: icmd.None,
		Err: "no kubeconfig with a context (looked in " + filepath.Join(home, ".kube", "config") + "); start a local cluster with: sandboxtest-setup local up"})
}

func TestGCBadInput(t *testing.T) {
	sandboxtestSetup(nil, "gc", "--older-than", "-1h").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: "--older-than -1h0m0s is negative; use 0 for any age"})
	sandboxtestSetup(nil, "gc", "default").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: `gc takes no arguments (got ["default"])`})
	sandboxtestSetup(nil, "gc", "-A", "default").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: `gc takes no arguments (got ["default"])`})
	sandboxtestSetup(nil, "gc", "--older-than", "soon").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: `invalid argument "soon" for "--older-than" flag`})
	sandboxtestSetup(nil, "gc", "-o", "xml").Assert(t, icmd.Expected{ExitCode: exitUsage, Err: `"xml" is not an output format; use json or yaml`})
}

func TestGCHelp(t *testing.T) {
	res := sandboxtestSetup(nil, "gc", "--help")
	res.Assert(t, icmd.Success)
	for _, want := range []string{
		"-n, --namespace string", `then the kube context's namespace, then "default"`, "-A, --all-namespaces", "--older-than duration", "(default 1h0m0s)",
		"--run-id string", kube.LabelRunID, "--dry-run", "--kubeconfig string", "--context string", "-o, --output format",
	} {
		assert.Check(t, is.Contains(res.Stdout(), want), fmt.Sprintf("gc --help lacks %q", want))
	}
}

// TestNamespaceDefaulting: -n, then $SANDBOXTEST_NAMESPACE, then the kube
// context's namespace, then "default" (kube.ResolveNamespace, which the
// library follows too); seen through gc -o json, which reports it.
func TestNamespaceDefaulting(t *testing.T) {
	kc := localCluster(t).kubeconfig
	cfg, err := clientcmd.LoadFromFile(kc)
	assert.NilError(t, err)
	withNS := cfg.DeepCopy()
	withNS.Contexts[withNS.CurrentContext].Namespace = "from-context"
	withNSPath := filepath.Join(t.TempDir(), "kubeconfig")
	assert.NilError(t, clientcmd.WriteToFile(*withNS, withNSPath))

	for _, tc := range []struct {
		name, kubeconfig, env string
		args                  []string
		want                  string
	}{
		{name: "flag over all", kubeconfig: withNSPath, env: "from-env", args: []string{"-n", "from-flag"}, want: "from-flag"},
		{name: "long flag", kubeconfig: withNSPath, env: "from-env", args: []string{"--namespace=from-flag"}, want: "from-flag"},
		{name: "variable over context", kubeconfig: withNSPath, env: "from-env", want: "from-env"},
		{name: "context over default", kubeconfig: withNSPath, want: "from-context"},
		{name: "default", kubeconfig: kc, want: "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"gc", "--kubeconfig", tc.kubeconfig, "--dry-run", "-o", "json"}, tc.args...)
			res := sandboxtestSetup([]string{"SANDBOXTEST_NAMESPACE=" + tc.env}, args...)
			res.Assert(t, icmd.Success)
			var doc GCReport
			assert.NilError(t, json.Unmarshal([]byte(res.Stdout()), &doc), res.Stdout())
			assert.Check(t, is.Equal(doc.Namespace, tc.want))
		})
	}
}
