package kube

import (
	"context"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ClusterKind says what kind of cluster a kubeconfig points at.
type ClusterKind string

const (
	ClusterLocal    ClusterKind = "local" // the sandboxtest local cluster (a node labelled LocalNodeLabel)
	ClusterKindKind ClusterKind = "kind"  // Kind: context kind-*, or nodes with providerID kind://
	ClusterOther    ClusterKind = "other"
)

// DetectCluster tells the local cluster, Kind and anything else apart, and says how it knows.
func DetectCluster(ctx context.Context, cs kubernetes.Interface, contextName string) (ClusterKind, string, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return ClusterOther, "", err
	}
	for _, n := range nodes.Items {
		if n.Labels[LocalNodeLabel] == "true" {
			return ClusterLocal, "node " + n.Name + " is the sandboxtest local process node", nil
		}
	}
	if strings.HasPrefix(contextName, "kind-") {
		return ClusterKindKind, "kube context " + contextName + " is a Kind context", nil
	}
	for _, n := range nodes.Items {
		if strings.HasPrefix(n.Spec.ProviderID, "kind://") {
			return ClusterKindKind, "node " + n.Name + " has providerID " + n.Spec.ProviderID, nil
		}
	}
	return ClusterOther, "neither the local process node nor Kind nodes found", nil
}
