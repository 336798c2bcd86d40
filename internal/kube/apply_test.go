package kube

import (
	"encoding/json"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Deploy's second run is "unchanged" only if what ToUnstructured sends is
// what the server already has: no status, no server-owned metadata, no nulls.
// (created/configured/unchanged are tested against a real cluster in fixtures.)
func TestToUnstructuredIsAnApplyConfiguration(t *testing.T) {
	for _, tc := range []struct {
		obj              runtime.Object
		apiVersion, kind string
	}{
		{&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "ns", ResourceVersion: "7", UID: "u"},
			Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}},
			Status:     appsv1.DeploymentStatus{Replicas: 3},
		}, "apps/v1", "Deployment"},
		{&extv1beta1.SandboxWarmPool{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}, "extensions.agents.x-k8s.io/v1beta1", "SandboxWarmPool"},
		{&gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns"}}, "gateway.networking.k8s.io/v1", "Gateway"},
		{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "n"}}, "v1", "Namespace"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			u, err := ToUnstructured(tc.obj)
			assert.NilError(t, err)
			assert.Check(t, is.Equal(u.GetAPIVersion(), tc.apiVersion))
			assert.Check(t, is.Equal(u.GetKind(), tc.kind))
			data, err := json.Marshal(u.Object)
			assert.NilError(t, err)
			for _, banned := range []string{`"status"`, `"resourceVersion"`, `"uid"`, `"creationTimestamp"`, `null`} {
				assert.Check(t, !strings.Contains(string(data), banned), "%s in %s", banned, data)
			}
		})
	}
}

// notAKind is a runtime.Object no scheme registers.
type notAKind struct{ metav1.TypeMeta }

func (n *notAKind) DeepCopyObject() runtime.Object { c := *n; return &c }

func TestToUnstructuredRejectsUnknownTypes(t *testing.T) {
	_, err := ToUnstructured(&notAKind{})
	assert.Check(t, is.ErrorContains(err, "*kube.notAKind is not a kind sandboxtest knows"))
}
