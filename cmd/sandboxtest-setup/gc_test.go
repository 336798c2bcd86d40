package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
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
	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
)

// TestGCCommand runs gc against a local cluster of its own: the flags reach
// the sweep, each object and a summary are printed, failures exit non-zero.
func TestGCCommand(t *testing.T) {
	ctx := context.Background()
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: t.TempDir(), Log: io.Discard}, nil)
	assert.NilError(t, err)
	t.Cleanup(func() { c.Stop() })
	cs := kubernetes.NewForConfigOrDie(c.RESTConfig)
	x := extclient.NewForConfigOrDie(c.RESTConfig).ExtensionsV1beta1()
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
	kc := c.Kubeconfig

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

	out, errOut, code = cli(t, "gc", "--kubeconfig", kc, "--older-than", "0", "--run-id", "r1")
	assert.Equal(t, code, 0, errOut)
	assert.Check(t, is.Contains(out, "deleted claim default/old-1 (run r1, test TestCLI, age "))
	assert.Check(t, is.Contains(out, "deleted cold pool default/pool (run r1, age "))
	assert.Check(t, is.Contains(out, `deleted 2 claims and 1 cold pool in namespace "default", run r1`+"\n"))
	assert.Check(t, !claimExists("default", "old-1") && !claimExists("default", "old-2"))
	assert.Check(t, claimExists("default", "unlabelled") && claimExists("default", "other-run"))
	assert.Check(t, claimExists(other.Name, "far"), "a one-namespace gc reached namespace %s", other.Name)

	out, errOut, code = cli(t, "gc", "--kubeconfig", kc, "--older-than", "0", "--run-id", "r1", "--all-namespaces")
	assert.Equal(t, code, 0, errOut)
	assert.Check(t, is.Contains(out, "deleted claim gc-other/far (run r1, test TestCLI, age "))
	assert.Check(t, is.Contains(out, "deleted 1 claim and 0 cold pools in all namespaces, run r1\n"))
	assert.Check(t, !claimExists(other.Name, "far"))

	// A user who may list but not delete: each failure printed, the exit code says so.
	limited := gcListOnlyKubeconfig(t, cs, c.RESTConfig, kc, "gc-cli-lister")
	out, errOut, code = cli(t, "gc", "--kubeconfig", limited, "--older-than", "0", "--run-id", "r2")
	t.Logf("gc as a list-only user:\n%s%s", out, errOut)
	assert.Check(t, is.Equal(code, 1))
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
		assert.Check(t, is.Equal(code, 1), "%v", args)
		assert.Check(t, is.Equal(out, ""), "%v", args)
		assert.Check(t, is.Equal(strings.Count(errOut, "\n"), 1), "not one line: %q", errOut)
		assert.Check(t, is.Contains(errOut, "cannot reach the cluster at "+server))
		assert.Check(t, is.Contains(errOut, "sandboxtest-setup local up"))
	}
}

func TestGCWithoutKubeconfig(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("HOME", t.TempDir()) // no ~/.kube/config
	out, errOut, code := cli(t, "gc")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Equal(out, ""))
	assert.Check(t, is.Contains(errOut, "sandboxtest-setup local up"))
}

func TestGCBadInput(t *testing.T) {
	_, errOut, code := cli(t, "gc", "--older-than", "-1h")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(errOut, "--older-than -1h0m0s is negative; use 0 for any age"))

	_, errOut, code = cli(t, "gc", "default")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(errOut, `gc takes no arguments (got ["default"])`))

	_, errOut, code = cli(t, "gc", "--older-than", "soon")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(errOut, `invalid value "soon" for flag -older-than`))
}

func TestGCHelp(t *testing.T) {
	out, _, code := cli(t, "--help")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(out, "  gc "))
	_, errOut, code := cli(t, "gc", "--help")
	assert.Check(t, is.Equal(code, 0))
	for _, want := range []string{
		"-namespace string", `(default "default")`, "-all-namespaces", "-older-than duration", "(default 1h0m0s)",
		"-run-id string", kube.LabelRunID, "-dry-run", "-kubeconfig string",
	} {
		assert.Check(t, is.Contains(errOut, want), fmt.Sprintf("gc --help lacks %q", want))
	}
}
