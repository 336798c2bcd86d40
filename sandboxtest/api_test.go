package sandboxtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/sandboxtest"
)

// clients talks to the cluster the suite runs against.
func clients(t *testing.T) *kube.Clients {
	t.Helper()
	cfg, err := sandboxtest.ResolveConfig()
	assert.NilError(t, err)
	c, err := kube.NewClients(cfg.REST)
	assert.NilError(t, err)
	return c
}

func TestCallOptionsOnEveryCall(t *testing.T) {
	sb := sandboxtest.New(t, template)
	ctx := context.Background()
	retry := sandboxtest.WithRetries(3)
	assert.NilError(t, sb.WriteFileE(ctx, "opts/f.txt", []byte("x"), retry, sandboxtest.WithCallTimeout(time.Minute)))
	data, err := sb.ReadFileE(ctx, "opts/f.txt", retry)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(data), "x"))
	entries, err := sb.ListDirE(ctx, "opts", retry)
	assert.NilError(t, err)
	assert.Check(t, is.Len(entries, 1))
	ok, err := sb.ExistsE(ctx, "opts/f.txt", retry)
	assert.NilError(t, err)
	assert.Check(t, ok)

	// A timeout too short for any call: each fails with it, wrapped.
	tiny := sandboxtest.WithCallTimeout(time.Nanosecond)
	calls := map[string]error{}
	calls["WriteFileE"] = sb.WriteFileE(ctx, "opts/g.txt", []byte("y"), tiny)
	_, calls["ReadFileE"] = sb.ReadFileE(ctx, "opts/f.txt", tiny)
	_, calls["ListDirE"] = sb.ListDirE(ctx, "opts", tiny)
	_, calls["ExistsE"] = sb.ExistsE(ctx, "opts/f.txt", tiny)
	_, calls["RunE"] = sb.RunE(ctx, "true", tiny)
	for name, err := range calls {
		assert.Check(t, errors.Is(err, context.DeadlineExceeded), "%s: %v", name, err)
		assert.Check(t, is.ErrorContains(err, "call timeout of 1ns ran out (WithCallTimeout)"), name)
	}
}

func TestDefaultCallTimeout(t *testing.T) {
	t.Setenv("SANDBOXTEST_CALL_TIMEOUT", "2s")
	sb := sandboxtest.New(t, template)
	_, err := sb.RunE(context.Background(), "sleep 30")
	assert.Check(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.Check(t, is.ErrorContains(err, `running "sleep 30" in sandbox`))
	assert.Check(t, is.ErrorContains(err, "the call timeout of 2s ran out (SANDBOXTEST_CALL_TIMEOUT"))
	t.Logf("the error of a hung command: %v", err)
	// WithCallTimeout overrides the default for one call.
	sb.RunOK("true")
	_, err = sb.RunE(context.Background(), "sleep 3", sandboxtest.WithCallTimeout(time.Minute))
	assert.NilError(t, err)
}

func TestRunArgs(t *testing.T) {
	sb := sandboxtest.New(t, template)
	args := []string{"a b", "it's", "", "$HOME", `back\slash`, "tab\tthere", "new\nline", `"dq"`, "ü", "*", ";|&"}
	argv := append([]string{"python3", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"}, args...)
	res := sb.RunArgs(argv...)
	res.Assert(t, sandboxtest.Expected{})
	var got []string
	assert.NilError(t, json.Unmarshal([]byte(res.Stdout), &got), res.Stdout)
	assert.Check(t, is.DeepEqual(got, args))

	_, err := sb.RunArgsE(context.Background(), nil)
	assert.Check(t, is.ErrorContains(err, "argv is empty"))
}

func TestPodMetadataAndRequestTime(t *testing.T) {
	before := time.Now()
	sb := sandboxtest.New(t, template,
		sandboxtest.WithPodLabels(map[string]string{"sandbox.users.io/team": "qa"}),
		sandboxtest.WithPodAnnotations(map[string]string{"example.com/note": "from the test"}))
	c := clients(t)
	ctx := context.Background()
	// A pod adopted from the warm pool gets them by an update, maybe just after Ready.
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		pod, err := c.Core.CoreV1().Pods(sb.Namespace()).Get(ctx, sb.PodName(), metav1.GetOptions{})
		switch {
		case err != nil:
			return poll.Error(err)
		case pod.Labels["sandbox.users.io/team"] != "qa" || pod.Annotations["example.com/note"] != "from the test":
			return poll.Continue("pod labels %v, annotations %v", pod.Labels, pod.Annotations)
		}
		return poll.Success()
	}, poll.WithTimeout(30*time.Second), poll.WithDelay(200*time.Millisecond))

	claim, err := c.Extensions.ExtensionsV1beta1().SandboxClaims(sb.Namespace()).Get(ctx, sb.ClaimName(), metav1.GetOptions{})
	assert.NilError(t, err)
	v := claim.Annotations["agents.x-k8s.io/client-first-requested-at"]
	at, err := time.Parse(time.RFC3339Nano, v)
	assert.NilError(t, err, "annotation %q", v)
	assert.Check(t, !at.Before(before.Truncate(time.Second)) && !at.After(claim.CreationTimestamp.Add(time.Second)),
		"requested at %s, test started %s, claim created %s", at, before, claim.CreationTimestamp)
}

func TestTerminalReasonsFailNewAtOnce(t *testing.T) {
	vct := sandboxv1beta1.PersistentVolumeClaimTemplate{
		EmbeddedObjectMetadata: sandboxv1beta1.EmbeddedObjectMetadata{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
		},
	}
	for _, c := range []struct {
		name, reason string
		opt          sandboxtest.Option
	}{
		{"label without an allowed domain", "InvalidMetadata", sandboxtest.WithPodLabels(map[string]string{"team": "qa"})},
		{"reserved annotation", "InvalidMetadata", sandboxtest.WithPodAnnotations(map[string]string{"agents.x-k8s.io/x": "y"})},
		{"volume claim templates the template disallows", "VolumeClaimTemplatesError", sandboxtest.WithVolumeClaimTemplates(vct)},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The ready timeout is long: only a terminal reason ends New early enough.
			_, err := sandboxtest.NewE(context.Background(), t, template, c.opt, sandboxtest.WithReadyTimeout(10*time.Minute))
			var term *sandboxtest.TerminalError
			assert.Assert(t, errors.As(err, &term), "%v", err)
			assert.Check(t, is.Equal(term.Reason, c.reason))
			assert.Check(t, term.Claim != "" && term.Namespace == "default" && term.Template == template)
			assert.Check(t, is.ErrorContains(err, "cannot become Ready"))
			assert.Check(t, !errors.Is(err, context.DeadlineExceeded))
			t.Logf("%v", err)
		})
	}
}

func TestVolumeClaimTemplates(t *testing.T) {
	c := clients(t)
	ctx := context.Background()
	classes, err := c.Core.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	assert.NilError(t, err)
	hasDefault := false
	for _, sc := range classes.Items {
		hasDefault = hasDefault || sc.Annotations["storageclass.kubernetes.io/is-default-class"] == "true"
	}
	if !hasDefault {
		t.Skip("the cluster has no default StorageClass to bind the PVC")
	}
	api := c.Extensions.ExtensionsV1beta1().SandboxTemplates("default")
	base, err := api.Get(ctx, template, metav1.GetOptions{})
	assert.NilError(t, err)
	name := fmt.Sprintf("vct-%d", time.Now().UnixNano()%100000)
	tmpl := &extv1beta1.SandboxTemplate{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: *base.Spec.DeepCopy()}
	tmpl.Spec.VolumeClaimTemplatesPolicy = extv1beta1.VolumeClaimTemplatesPolicyAllowed
	ctr := &tmpl.Spec.PodTemplate.Spec.Containers[0]
	ctr.VolumeMounts = append(ctr.VolumeMounts, corev1.VolumeMount{Name: "data", MountPath: "/data"})
	_, err = api.Create(ctx, tmpl, metav1.CreateOptions{})
	assert.NilError(t, err)
	t.Cleanup(func() {
		_ = c.Extensions.ExtensionsV1beta1().SandboxWarmPools("default").Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = api.Delete(context.Background(), name, metav1.DeleteOptions{})
	})

	sb := sandboxtest.New(t, name, sandboxtest.WithVolumeClaimTemplates(sandboxv1beta1.PersistentVolumeClaimTemplate{
		EmbeddedObjectMetadata: sandboxv1beta1.EmbeddedObjectMetadata{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
		},
	}))
	sb.RunOK("sh -c 'echo kept > /data/f && cat /data/f'").Assert(t, sandboxtest.Expected{Out: "kept\n"})
	pvc, err := c.Core.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data-"+sb.SandboxName(), metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(pvc.Status.Phase, corev1.ClaimBound))
}

func TestStatusAndDelete(t *testing.T) {
	sb := sandboxtest.New(t, template)
	st := sb.Status()
	assert.Check(t, st.Ready && st.ClaimFound && st.SandboxFound, "%+v", st)
	assert.Check(t, is.Equal(st.Reason, "DependenciesReady"))
	assert.Check(t, hasCondition(st.Sandbox, "Ready", "True"), "%+v", st.Sandbox)
	poll.WaitOn(t, func(poll.LogT) poll.Result { // the claim copies the Sandbox's Ready
		if st := sb.Status(); !hasCondition(st.Claim, "Ready", "True") {
			return poll.Continue("claim conditions %+v", st.Claim)
		}
		return poll.Success()
	}, poll.WithTimeout(30*time.Second), poll.WithDelay(100*time.Millisecond))

	sb.Delete()
	_, err := sb.RunE(context.Background(), "true")
	assert.Check(t, errors.Is(err, sandboxtest.ErrDeleted), "%v", err)
	_, err = sb.ReadFileE(context.Background(), "x")
	assert.Check(t, errors.Is(err, sandboxtest.ErrDeleted), "%v", err)
	assert.NilError(t, sb.DeleteE(context.Background()), "a second Delete does nothing")
	st = sb.Status()
	assert.Check(t, !st.SandboxFound, "Delete waits until the Sandbox is gone: %+v", st)
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if st := sb.Status(); st.ClaimFound {
			return poll.Continue("claim still there: %+v", st.Claim)
		}
		return poll.Success()
	}, poll.WithTimeout(30*time.Second), poll.WithDelay(200*time.Millisecond))
}

func hasCondition(cs []sandboxtest.Condition, typ, status string) bool {
	for _, c := range cs {
		if c.Type == typ && c.Status == status {
			return true
		}
	}
	return false
}

func TestMatchableErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("template not found", func(t *testing.T) {
		_, err := sandboxtest.NewE(ctx, t, "no-such-template")
		assert.Check(t, errors.Is(err, sandboxtest.ErrTemplateNotFound), "%v", err)
	})
	t.Run("file not found", func(t *testing.T) {
		sb := sandboxtest.New(t, template)
		_, err := sb.ReadFileE(ctx, "missing.txt")
		assert.Check(t, errors.Is(err, fs.ErrNotExist), "%v", err)
		assert.Check(t, errors.Is(err, sandboxtest.ErrNotExist), "%v", err)
		_, err = sb.ListDirE(ctx, "missing-dir")
		assert.Check(t, errors.Is(err, fs.ErrNotExist), "%v", err)
	})
	t.Run("HTTP status", func(t *testing.T) {
		// Nothing listens on port 9 of the sandbox: the router answers 502.
		sb := sandboxtest.New(t, template, sandboxtest.WithServerPort(9))
		_, err := sb.RunE(ctx, "true")
		var h *sandboxtest.HTTPError
		assert.Assert(t, errors.As(err, &h), "%v", err)
		assert.Check(t, is.Equal(h.StatusCode, 502))
		assert.Check(t, h.RequestID != "")
		assert.Check(t, is.ErrorContains(err, "router 502"))
	})
}

func TestInvalidSwitchFailsNew(t *testing.T) {
	t.Setenv("SANDBOXTEST_QUIET", "yes please")
	_, err := sandboxtest.NewE(context.Background(), t, template)
	assert.Check(t, is.ErrorContains(err, `SANDBOXTEST_QUIET="yes please" is not a boolean`))
	assert.Check(t, strings.HasPrefix(err.Error(), "sandboxtest: "), err.Error())
}
