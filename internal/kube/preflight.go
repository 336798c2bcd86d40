package kube

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// CheckReachable asks the API server for its version, so that an unreachable
// cluster fails at once with one line naming the server, instead of after a
// client's retries with an error about whatever was asked first.
func CheckReachable(ctx context.Context, cfg *rest.Config) error {
	c := rest.CopyConfig(cfg)
	c.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		return fmt.Errorf("cluster at %s: %w", cfg.Host, err)
	}
	if _, err := cs.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw(); err != nil {
		return &UnreachableError{Server: cfg.Host, Err: err}
	}
	return nil
}

// UnreachableError is a cluster whose API server did not answer, so a
// command can add where the address came from and how to get a cluster.
type UnreachableError struct {
	Server string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the cluster at %s: %v", e.Server, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// IsLocalCluster reports whether the cluster is sandboxtest's local cluster:
// one of its nodes carries LocalNodeLabel=true.
func IsLocalCluster(ctx context.Context, cs kubernetes.Interface) (bool, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: LocalNodeLabel + "=true", Limit: 1})
	if err != nil {
		return false, fmt.Errorf("listing nodes: %w", err)
	}
	return len(nodes.Items) > 0, nil
}
