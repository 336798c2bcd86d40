package kube_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	asclient "sigs.k8s.io/agent-sandbox/clients/k8s/clientset/versioned"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
	"github.com/agentsandbox/go-sandboxtest/internal/syncbuf"
)

// runtimeImage is an image the process node runs with its built-in runtime server.
const runtimeImage = "us-central1-docker.pkg.dev/k8s-staging-images/agent-sandbox/python-runtime-sandbox:latest-main"

// leftBehindEnv, when set (to a JSON leftBehindSpec), makes the test binary
// a test run that creates sandboxtest's objects, waits for its claims to be
// Ready, reports READY and blocks until it is killed.
const leftBehindEnv = "SANDBOXTEST_TEST_GC_LEFT_BEHIND"

// The cluster every test in this package shares (started by TestMain).
var (
	cluster *localcluster.Cluster
	cs      kubernetes.Interface
	ext     extclient.Interface
	agents  asclient.Interface
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(leftBehindEnv); spec != "" {
		if err := runLeftBehind(spec); err != nil {
			fmt.Fprintln(os.Stderr, "left-behind run:", err)
			os.Exit(2)
		}
		select {} // until killed
	}
	os.Exit(runWithCluster(m))
}

func runWithCluster(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sandboxtest-kube-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	cluster, err = localcluster.Start(context.Background(), localcluster.Options{Dir: dir, Log: os.Stderr}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube tests: starting the local cluster:", err)
		return 1
	}
	defer cluster.Stop()
	fmt.Fprintf(os.Stderr, "kube tests: local cluster up in %s\n", time.Since(start).Round(time.Millisecond))
	cs = kubernetes.NewForConfigOrDie(cluster.RESTConfig)
	ext = extclient.NewForConfigOrDie(cluster.RESTConfig)
	agents = asclient.NewForConfigOrDie(cluster.RESTConfig)
	return m.Run()
}

// leftBehindSpec tells the left-behind run where to create what.
type leftBehindSpec struct {
	Kubeconfig string
	Namespace  string
	RunID      string
	OtherRunID string
}

// leftBehindReady is the left-behind run's READY line: claim name -> sandbox name.
type leftBehindReady struct {
	Sandboxes map[string]string
}

// The objects a left-behind run creates, all in the same namespace.
const (
	leftTemplate   = "gc-python"
	leftPool       = "gc-python" // a cold pool of the run
	leftOne        = "left-1"    // sandboxtest's, of the run
	leftTwo        = "left-2"    // sandboxtest's, of the run
	leftUnlabelled = "unlabelled"
	leftOtherRun   = "other-run" // sandboxtest's, of another run
)

// runLeftBehind does what a test binary does before it is killed: a cold
// pool for a template, claims on it, and waiting for them to be Ready.
func runLeftBehind(specJSON string) error {
	var spec leftBehindSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", spec.Kubeconfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	x := extclient.NewForConfigOrDie(cfg).ExtensionsV1beta1()
	if _, err := x.SandboxTemplates(spec.Namespace).Create(ctx, template(spec.Namespace, leftTemplate), metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := x.SandboxWarmPools(spec.Namespace).Create(ctx, coldPool(spec.Namespace, leftPool, leftTemplate, spec.RunID), metav1.CreateOptions{}); err != nil {
		return err
	}
	claims := []*extv1beta1.SandboxClaim{
		claim(spec.Namespace, leftOne, leftPool, ours(spec.RunID, "TestLeftBehindOne")),
		claim(spec.Namespace, leftTwo, leftPool, ours(spec.RunID, "TestLeftBehindTwo")),
		claim(spec.Namespace, leftUnlabelled, leftPool, nil),
		claim(spec.Namespace, leftOtherRun, leftPool, ours(spec.OtherRunID, "TestOtherRun")),
	}
	for _, c := range claims {
		if _, err := x.SandboxClaims(spec.Namespace).Create(ctx, c, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	ready := leftBehindReady{Sandboxes: map[string]string{}}
	for _, c := range claims {
		for {
			got, err := x.SandboxClaims(spec.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if claimReady(got) && got.Status.SandboxStatus.Name != "" {
				ready.Sandboxes[c.Name] = got.Status.SandboxStatus.Name
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("claim %s not Ready (conditions %+v): %w", c.Name, got.Status.Conditions, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	data, _ := json.Marshal(ready)
	fmt.Printf("READY %s\n", data)
	return nil
}

func claimReady(c *extv1beta1.SandboxClaim) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == "Ready" && cond.Status == metav1.ConditionTrue {
			return true
		}
	}
	return false
}

// TestGCClaimsLeftByKilledTestBinary is the case gc exists for: a test
// binary SIGKILLed with its claims Ready, so no t.Cleanup ran.
func TestGCClaimsLeftByKilledTestBinary(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "gc-killed-")
	run, other := "killed-"+ns, "other-"+ns
	sandboxes := startLeftBehind(t, leftBehindSpec{Kubeconfig: cluster.Kubeconfig, Namespace: ns, RunID: run, OtherRunID: other})
	for _, c := range []string{leftOne, leftTwo, leftUnlabelled, leftOtherRun} {
		assert.Assert(t, sandboxes[c] != "", "no sandbox reported for claim %s: %v", c, sandboxes)
	}

	// A dry run lists exactly the run's two claims and deletes nothing.
	var log bytes.Buffer
	rep, err := kube.GC(ctx, cluster.RESTConfig, kube.GCOptions{Namespace: ns, OlderThan: kube.AnyAge, RunID: run, DryRun: true, Log: &log})
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(names(rep.Claims), []string{leftOne, leftTwo}))
	assert.Check(t, is.Len(rep.Pools, 0), "the pool is in use by claims that stay")
	assert.Check(t, is.Equal(rep.PoolsInUse, 1))
	assert.Check(t, rep.DryRun)
	lines := nonEmptyLines(log.String())
	assert.Assert(t, is.Len(lines, 2), log.String())
	assert.Check(t, strings.HasPrefix(lines[0], fmt.Sprintf("would delete claim %s/%s (run %s, test TestLeftBehindOne, age ", ns, leftOne, run)), lines[0])
	assert.Check(t, strings.HasPrefix(lines[1], fmt.Sprintf("would delete claim %s/%s (run %s, test TestLeftBehindTwo, age ", ns, leftTwo, run)), lines[1])
	assert.Check(t, is.Contains(rep.Summary(), "would delete 2 claims and 0 cold pools in namespace"))
	for _, c := range []string{leftOne, leftTwo, leftUnlabelled, leftOtherRun} {
		assert.Check(t, claimExists(t, ns, c), "the dry run deleted claim %s", c)
		assert.Check(t, sandboxExists(t, ns, sandboxes[c]), "the dry run deleted sandbox %s", sandboxes[c])
	}

	// The real run deletes them, and their Sandboxes and pods go.
	log.Reset()
	rep, err = kube.GC(ctx, cluster.RESTConfig, kube.GCOptions{Namespace: ns, OlderThan: kube.AnyAge, RunID: run, Log: &log})
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(names(rep.Claims), []string{leftOne, leftTwo}))
	assert.Check(t, is.Len(rep.Pools, 0))
	lines = nonEmptyLines(log.String())
	assert.Assert(t, is.Len(lines, 2), log.String())
	assert.Check(t, strings.HasPrefix(lines[0], fmt.Sprintf("deleted claim %s/%s (run %s, test TestLeftBehindOne, age ", ns, leftOne, run)), lines[0])
	assert.Check(t, is.Contains(rep.Summary(), "deleted 2 claims and 0 cold pools"))
	start := time.Now()
	for _, c := range []string{leftOne, leftTwo} {
		sb := sandboxes[c]
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			switch {
			case claimExists(t, ns, c):
				return poll.Continue("claim %s still exists", c)
			case sandboxExists(t, ns, sb):
				return poll.Continue("sandbox %s of deleted claim %s still exists", sb, c)
			case podExists(t, ns, sb):
				return poll.Continue("pod %s of deleted claim %s still exists", sb, c)
			}
			return poll.Success()
		}, poll.WithTimeout(60*time.Second), poll.WithDelay(100*time.Millisecond))
	}
	t.Logf("claims, sandboxes and pods gone %s after gc", time.Since(start).Round(time.Millisecond))

	// Nothing of the run is left for a second gc.
	log.Reset()
	rep, err = kube.GC(ctx, cluster.RESTConfig, kube.GCOptions{Namespace: ns, OlderThan: kube.AnyAge, RunID: run, Log: &log})
	assert.NilError(t, err)
	assert.Check(t, is.Len(rep.Claims, 0))
	assert.Check(t, is.Equal(log.String(), ""))

	// What was not the run's stays, and so does the pool they use.
	for _, c := range []string{leftUnlabelled, leftOtherRun} {
		assert.Check(t, claimExists(t, ns, c), "claim %s was deleted", c)
		assert.Check(t, sandboxExists(t, ns, sandboxes[c]), "sandbox %s was deleted", sandboxes[c])
	}
	assert.Check(t, poolExists(t, ns, leftPool), "cold pool %s was deleted while claims use it", leftPool)
}

// startLeftBehind runs a left-behind test binary, waits for its READY line,
// SIGKILLs it and returns the sandboxes it reported.
func startLeftBehind(t *testing.T, spec leftBehindSpec) map[string]string {
	t.Helper()
	exe, err := os.Executable()
	assert.NilError(t, err)
	data, _ := json.Marshal(spec)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), leftBehindEnv+"="+string(data))
	var stderr syncbuf.Buffer // shared with a child process
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	assert.NilError(t, err)
	assert.NilError(t, cmd.Start())
	readyc := make(chan string, 1)
	done := make(chan struct{})
	var waitErr error
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, found := strings.CutPrefix(sc.Text(), "READY "); found {
				readyc <- rest
			}
		}
		waitErr = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // when the test failed before killing it
		<-done
	})

	start := time.Now()
	var ready leftBehindReady
	select {
	case line := <-readyc:
		assert.NilError(t, json.Unmarshal([]byte(line), &ready), line)
	case <-done:
		t.Fatalf("the left-behind run exited (%v) before it was Ready; stderr:\n%s", waitErr, stderr.String())
	case <-time.After(4 * time.Minute):
		t.Fatalf("the left-behind run not Ready after 4m; stderr:\n%s", stderr.String())
	}
	t.Logf("left-behind run (pid %d) Ready after %s; killing it", cmd.Process.Pid, time.Since(start).Round(time.Millisecond))
	assert.NilError(t, cmd.Process.Signal(syscall.SIGKILL))
	<-done
	ee, ok := waitErr.(*exec.ExitError)
	assert.Assert(t, ok, "left-behind run: %v", waitErr)
	ws := ee.Sys().(syscall.WaitStatus)
	assert.Assert(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "left-behind run ended with %v, not SIGKILL", waitErr)
	return ready.Sandboxes
}

func TestGCColdPools(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "gc-pools-")
	run := "pools-" + ns
	mustCreatePool(t, coldPool(ns, "in-use", "tmpl", run))
	mustCreatePool(t, coldPool(ns, "unused", "tmpl", run))
	mustCreatePool(t, coldPool(ns, "used-by-leftover", "tmpl", run))
	mustCreatePool(t, coldPool(ns, "other-run", "tmpl", "another-"+run))
	notCold := coldPool(ns, "not-cold", "tmpl", run)
	delete(notCold.Labels, kube.LabelColdPool)
	mustCreatePool(t, notCold)
	mustCreateClaim(t, claim(ns, "keeper", "in-use", nil))
	mustCreateClaim(t, claim(ns, "leftover", "used-by-leftover", ours(run, "TestLeftover")))

	// Dry run: the pool whose only claim goes counts as unused.
	var log bytes.Buffer
	rep, err := kube.GC(ctx, cluster.RESTConfig, kube.GCOptions{Namespace: ns, OlderThan: kube.AnyAge, RunID: run, DryRun: true, Log: &log})
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(names(rep.Claims), []string{"leftover"}))
	assert.Check(t, is.DeepEqual(names(rep.Pools), []string{"unused", "used-by-leftover"}))
	assert.Check(t, is.Equal(rep.PoolsInUse, 1))
	assert.Check(t, is.Contains(log.String(), fmt.Sprintf("would delete cold pool %s/unused (run %s, age ", ns, run)))
	for _, p := range []string{"in-use", "unused", "used-by-leftover", "other-run", "not-cold"} {
		assert.Check(t, poolExists(t, ns, p), "the dry run deleted pool %s", p)
	}

	log.Reset()
	rep, err = kube.GC(ctx, cluster.RESTConfig, kube.GCOptions{Namespace: ns, OlderThan: kube.AnyAge, RunID: run, Log: &log})
	assert.NilError(t, err, log.String())
	assert.Check(t, is.DeepEqual(names(rep.Claims), []string{"leftover"}))
	assert.Check(t, is.DeepEqual(names(rep.Pools), []string{"unused", "used-by-leftover"}))
	assert.Check(t, is.Contains(log.String(), fmt.Sprintf("deleted cold pool %s/used-by-leftover (run %s, age ", ns, run)))
	assert.Check(t, is.Contains(rep.Summary(), "deleted 1 claim and 2 cold pools"))
	assert.Check(t, is.Contains(rep.Summary(), "1 cold pool in use"))
	for _, p := range []string{"unused", "used-by-leftover"} {
		poll.WaitOn(t, func(poll.LogT) poll.Result {
			if poolExists(t, ns, p) {
				return poll.Continue("pool %s still exists", p)
			}
			return poll.Success()
		}, poll.WithTimeout(30*time.Second), poll.WithDelay(50*time.Millisecond))
	}
	for _, p := range []string{"in-use", "other-run", "not-cold"} {
		assert.Check(t, poolExists(t, ns, p), "pool %s was deleted", p)
	}
	assert.Check(t, claimExists(t, ns, "keeper"))

	// Without a run, gc takes every run's unused cold pool, never a pool that is not cold.
	log.Reset()
	rep, err = kube.GC(ctx, cluster.RESTConfig, kube.GCOptions{Namespace: ns, OlderThan: kube.AnyAge, Log: &log})
	assert.NilError(t, err, log.String())
	assert.Check(t, is.DeepEqual(names(rep.Pools), []string{"other-run"}))
	assert.Check(t, is.Len(rep.Claims, 0), "the unlabelled claim is not sandboxtest's")
	assert.Check(t, poolExists(t, ns, "in-use"))
	assert.Check(t, poolExists(t, ns, "not-cold"))
}

func TestGCOlderThanSparesFreshObjects(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "gc-fresh-")
	run := "fresh-" + ns
	mustCreatePool(t, coldPool(ns, "unused", "tmpl", run))
	mustCreateClaim(t, claim(ns, "fresh-1", "unused-elsewhere", ours(run, "TestFresh")))
	mustCreateClaim(t, claim(ns, "fresh-2", "unused-elsewhere", ours(run, "TestFresh")))

	for _, olderThan := range []time.Duration{0, time.Hour} { // 0: the default, 1h
		var log bytes.Buffer
		rep, err := kube.GC(ctx, cluster.RESTConfig, kube.GCOptions{Namespace: ns, OlderThan: olderThan, RunID: run, Log: &log})
		assert.NilError(t, err)
		assert.Check(t, is.Len(rep.Claims, 0), "OlderThan %s", olderThan)
		assert.Check(t, is.Len(rep.Pools, 0), "OlderThan %s", olderThan)
		assert.Check(t, is.Equal(rep.YoungerClaims, 2))
		assert.Check(t, is.Equal(rep.YoungerPools, 1))
		assert.Check(t, is.Equal(rep.OlderThan, time.Hour))
		assert.Check(t, is.Equal(log.String(), ""))
		assert.Check(t, is.Contains(rep.Summary(), "(kept: 3 younger than 1h)"))
	}
	for _, c := range []string{"fresh-1", "fresh-2"} {
		assert.Check(t, claimExists(t, ns, c), "fresh claim %s was deleted", c)
	}
	assert.Check(t, poolExists(t, ns, "unused"), "fresh cold pool was deleted")

	// The same objects go when any age will do: only their age saved them.
	rep, err := kube.GC(ctx, cluster.RESTConfig, kube.GCOptions{Namespace: ns, OlderThan: kube.AnyAge, RunID: run})
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(names(rep.Claims), []string{"fresh-1", "fresh-2"}))
	assert.Check(t, is.DeepEqual(names(rep.Pools), []string{"unused"}))
}

func TestGCAllNamespaces(t *testing.T) {
	ctx := context.Background()
	a, b := namespace(t, "gc-ns-a-"), namespace(t, "gc-ns-b-")
	run := "allns-" + a
	mustCreateClaim(t, claim(a, "in-a", "pool", ours(run, "TestA")))
	mustCreateClaim(t, claim(b, "in-b", "pool", ours(run, "TestB")))
	mustCreatePool(t, coldPool(b, "pool", "tmpl", run))

	rep, err := kube.GC(ctx, cluster.RESTConfig, kube.GCOptions{Namespace: a, OlderThan: kube.AnyAge, RunID: run})
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(keys(rep.Claims), []string{a + "/in-a"}))
	assert.Check(t, is.Len(rep.Pools, 0))
	assert.Check(t, claimExists(t, b, "in-b"), "a one-namespace gc deleted a claim in another namespace")
	assert.Check(t, poolExists(t, b, "pool"))

	var log bytes.Buffer
	rep, err = kube.GC(ctx, cluster.RESTConfig, kube.GCOptions{AllNamespaces: true, OlderThan: kube.AnyAge, RunID: run, Log: &log})
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(keys(rep.Claims), []string{b + "/in-b"}))
	assert.Check(t, is.DeepEqual(keys(rep.Pools), []string{b + "/pool"}))
	assert.Check(t, is.Equal(rep.Scope, "all namespaces, run "+run))
	assert.Check(t, is.Contains(log.String(), "deleted claim "+b+"/in-b (run "+run+", test TestB, age "))
	assert.Check(t, !claimExists(t, b, "in-b"))
}

// TestGCFailuresDoNotStopTheRest runs gc as a user who may list everywhere
// but delete only in one namespace: the other namespace's deletions fail
// first, and the rest still happens.
func TestGCFailuresDoNotStopTheRest(t *testing.T) {
	ctx := context.Background()
	denied, allowed := namespace(t, "gc-err-a-"), namespace(t, "gc-err-b-") // denied sorts first
	run := "errors-" + denied
	user := "gc-limited-" + denied
	res := []string{"sandboxclaims", "sandboxwarmpools"}
	grp := []string{extv1beta1.GroupVersion.Group}
	lister := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user},
		Rules: []rbacv1.PolicyRule{{APIGroups: grp, Resources: res, Verbs: []string{"list"}}}}
	_, err := cs.RbacV1().ClusterRoles().Create(ctx, lister, metav1.CreateOptions{})
	assert.NilError(t, err)
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user}, Subjects: subject}, metav1.CreateOptions{})
	assert.NilError(t, err)
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), user, metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(context.Background(), user, metav1.DeleteOptions{})
	})
	_, err = cs.RbacV1().Roles(allowed).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "deleter"},
		Rules: []rbacv1.PolicyRule{{APIGroups: grp, Resources: res, Verbs: []string{"delete"}}}}, metav1.CreateOptions{})
	assert.NilError(t, err)
	_, err = cs.RbacV1().RoleBindings(allowed).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "deleter"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "deleter"}, Subjects: subject}, metav1.CreateOptions{})
	assert.NilError(t, err)

	for _, ns := range []string{denied, allowed} {
		mustCreatePool(t, coldPool(ns, "pool", "tmpl", run))
	}
	mustCreateClaim(t, claim(denied, "denied-1", "pool", ours(run, "TestDenied")))
	mustCreateClaim(t, claim(denied, "denied-2", "pool", ours(run, "TestDenied")))
	mustCreateClaim(t, claim(allowed, "allowed", "pool", ours(run, "TestAllowed")))

	limited := rest.CopyConfig(cluster.RESTConfig)
	limited.Impersonate = rest.ImpersonationConfig{UserName: user}
	lx := extclient.NewForConfigOrDie(limited).ExtensionsV1beta1()
	poll.WaitOn(t, func(poll.LogT) poll.Result { // RBAC reaches the authorizer through informers
		if _, err := lx.SandboxClaims("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return poll.Continue("list as %s: %v", user, err)
		}
		if err := lx.SandboxClaims(allowed).Delete(ctx, "allowed", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			return poll.Continue("dry-run delete as %s: %v", user, err)
		}
		return poll.Success()
	}, poll.WithTimeout(30*time.Second), poll.WithDelay(100*time.Millisecond))

	var log bytes.Buffer
	rep, err := kube.GC(ctx, limited, kube.GCOptions{AllNamespaces: true, OlderThan: kube.AnyAge, RunID: run, Log: &log})
	assert.Assert(t, rep != nil, "no report: %v", err)
	assert.Check(t, is.ErrorContains(err, fmt.Sprintf("deleting claim %s/denied-1: ", denied)))
	assert.Check(t, is.ErrorContains(err, fmt.Sprintf("deleting claim %s/denied-2: ", denied)))
	assert.Check(t, is.ErrorContains(err, "forbidden"))
	assert.Check(t, is.Equal(rep.Failed, 2))
	assert.Check(t, is.DeepEqual(keys(rep.Claims), []string{allowed + "/allowed"}))
	assert.Check(t, is.DeepEqual(keys(rep.Pools), []string{allowed + "/pool"}), "the pool whose claim went")
	assert.Check(t, is.Equal(rep.PoolsInUse, 1), "the pool of the claims that failed to go")
	assert.Check(t, is.Contains(rep.Summary(), "; 2 failed"))
	assert.Check(t, is.Contains(log.String(), fmt.Sprintf("failed to delete claim %s/denied-1 (run %s, test TestDenied, age ", denied, run)))
	assert.Check(t, claimExists(t, denied, "denied-1"))
	assert.Check(t, poolExists(t, denied, "pool"))
	assert.Check(t, !claimExists(t, allowed, "allowed"))
}

// TestGCAlreadyGoneIsNotAnError deletes a claim between gc's list and its
// delete (from gc's own log line about the claim before it).
func TestGCAlreadyGoneIsNotAnError(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "gc-gone-")
	run := "gone-" + ns
	mustCreateClaim(t, claim(ns, "first", "pool", ours(run, "TestGone")))
	mustCreateClaim(t, claim(ns, "second", "pool", ours(run, "TestGone")))

	var log bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), "claim "+ns+"/first ") {
			assert.Check(t, ext.ExtensionsV1beta1().SandboxClaims(ns).Delete(ctx, "second", metav1.DeleteOptions{}))
			poll.WaitOn(t, func(poll.LogT) poll.Result {
				if claimExists(t, ns, "second") {
					return poll.Continue("claim second still exists")
				}
				return poll.Success()
			}, poll.WithTimeout(30*time.Second), poll.WithDelay(20*time.Millisecond))
		}
		return log.Write(p)
	})
	rep, err := kube.GC(ctx, cluster.RESTConfig, kube.GCOptions{Namespace: ns, OlderThan: kube.AnyAge, RunID: run, Log: w})
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(names(rep.Claims), []string{"first", "second"}))
	assert.Check(t, is.Equal(rep.Failed, 0))
	assert.Check(t, is.Contains(log.String(), fmt.Sprintf("claim %s/second (run %s, test TestGone, age ", ns, run)))
	assert.Check(t, is.Contains(log.String(), ") already gone\n"), log.String())
}

func TestGCUnreachableCluster(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	server := "https://" + l.Addr().String()
	l.Close() // nothing listens there any more
	rep, err := kube.GC(context.Background(), &rest.Config{Host: server, Timeout: 10 * time.Second}, kube.GCOptions{})
	assert.Check(t, rep == nil)
	assert.Assert(t, err != nil)
	assert.Check(t, is.Contains(err.Error(), "cannot reach the cluster at "+server))
	assert.Check(t, is.Contains(err.Error(), "sandboxtest-setup local up"))
	assert.Check(t, !strings.Contains(err.Error(), "\n"), "not one line: %q", err)
}

func TestGCReportText(t *testing.T) {
	o := kube.GCObject{Kind: "claim", Namespace: "default", Name: "x", RunID: "r1", Test: "TestFoo", Age: 2*time.Hour + 3*time.Minute + 10*time.Second}
	assert.Check(t, is.Equal(o.String(), "claim default/x (run r1, test TestFoo, age 2h3m)"))
	o = kube.GCObject{Kind: "cold pool", Namespace: "ns", Name: "p", Age: 4 * time.Second}
	assert.Check(t, is.Equal(o.String(), "cold pool ns/p (age 4s)"))

	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 0: "0s", 1499 * time.Millisecond: "1s", 59 * time.Second: "59s",
		time.Minute: "1m", 3*time.Minute + 20*time.Second: "3m20s", time.Hour: "1h",
		2*time.Hour + 3*time.Minute: "2h3m", 24 * time.Hour: "1d", 4*24*time.Hour + 7*time.Hour + 5*time.Minute: "4d7h",
	} {
		assert.Check(t, is.Equal(kube.FormatAge(d), want), "FormatAge(%s)", d)
	}

	r := &kube.GCReport{Scope: `namespace "default"`, OlderThan: time.Hour,
		Claims: make([]kube.GCObject, 2), Pools: make([]kube.GCObject, 1), YoungerClaims: 2, YoungerPools: 1, PoolsInUse: 1}
	assert.Check(t, is.Equal(r.Summary(), `deleted 2 claims and 1 cold pool in namespace "default" (kept: 3 younger than 1h, 1 cold pool in use)`))
	r = &kube.GCReport{Scope: "all namespaces, run r1", OlderThan: kube.AnyAge, DryRun: true, Claims: make([]kube.GCObject, 1), Failed: 1}
	assert.Check(t, is.Equal(r.Summary(), "would delete 1 claim and 0 cold pools in all namespaces, run r1; 1 failed"))
}

// namespace creates a namespace for one test and deletes it afterwards.
func namespace(t *testing.T, prefix string) string {
	t.Helper()
	n, err := cs.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}, metav1.CreateOptions{})
	assert.NilError(t, err)
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), n.Name, metav1.DeleteOptions{}) })
	return n.Name
}

// ours are the labels sandboxtest puts on a claim.
func ours(run, test string) map[string]string {
	return map[string]string{kube.LabelCreatedBy: kube.CreatedByValue, kube.LabelRunID: run, kube.LabelTest: test}
}

func claim(ns, name, pool string, labels map[string]string) *extv1beta1.SandboxClaim {
	return &extv1beta1.SandboxClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       extv1beta1.SandboxClaimSpec{WarmPoolRef: extv1beta1.SandboxWarmPoolRef{Name: pool}},
	}
}

// coldPool is a pool sandboxtest created on demand: no warm replicas.
func coldPool(ns, name, tmpl, run string) *extv1beta1.SandboxWarmPool {
	return &extv1beta1.SandboxWarmPool{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			kube.LabelCreatedBy: kube.CreatedByValue, kube.LabelColdPool: "true", kube.LabelRunID: run,
		}},
		Spec: extv1beta1.SandboxWarmPoolSpec{Replicas: new(int32), TemplateRef: extv1beta1.SandboxTemplateRef{Name: tmpl}},
	}
}

// template is a one-container template the process node runs, Ready when it serves.
func template(ns, name string) *extv1beta1.SandboxTemplate {
	return &extv1beta1.SandboxTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: extv1beta1.SandboxTemplateSpec{SandboxBlueprint: sandboxv1beta1.SandboxBlueprint{
			PodTemplate: sandboxv1beta1.PodTemplate{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "python-runtime", Image: runtimeImage,
				Ports: []corev1.ContainerPort{{ContainerPort: 8888}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8888)},
				}},
			}}}},
		}},
	}
}

func mustCreateClaim(t *testing.T, c *extv1beta1.SandboxClaim) {
	t.Helper()
	_, err := ext.ExtensionsV1beta1().SandboxClaims(c.Namespace).Create(context.Background(), c, metav1.CreateOptions{})
	assert.NilError(t, err)
}

func mustCreatePool(t *testing.T, p *extv1beta1.SandboxWarmPool) {
	t.Helper()
	_, err := ext.ExtensionsV1beta1().SandboxWarmPools(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	assert.NilError(t, err)
}

func claimExists(t *testing.T, ns, name string) bool {
	_, err := ext.ExtensionsV1beta1().SandboxClaims(ns).Get(context.Background(), name, metav1.GetOptions{})
	return exists(t, err)
}

func poolExists(t *testing.T, ns, name string) bool {
	_, err := ext.ExtensionsV1beta1().SandboxWarmPools(ns).Get(context.Background(), name, metav1.GetOptions{})
	return exists(t, err)
}

func sandboxExists(t *testing.T, ns, name string) bool {
	_, err := agents.AgentsV1beta1().Sandboxes(ns).Get(context.Background(), name, metav1.GetOptions{})
	return exists(t, err)
}

func podExists(t *testing.T, ns, name string) bool {
	_, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	return exists(t, err)
}

// exists says whether a Get found its object; another error fails the test
// (without stopping it: poll checks run on their own goroutine).
func exists(t *testing.T, err error) bool {
	t.Helper()
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Errorf("get: %v", err)
	}
	return true
}

func names(objs []kube.GCObject) []string {
	out := []string{}
	for _, o := range objs {
		out = append(out, o.Name)
	}
	sort.Strings(out)
	return out
}

func keys(objs []kube.GCObject) []string {
	out := []string{}
	for _, o := range objs {
		out = append(out, o.Namespace+"/"+o.Name)
	}
	sort.Strings(out)
	return out
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
