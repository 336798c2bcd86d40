package processnode

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
)

// Temporary stand-ins for volumes.go (another branch); deleted at merge.

func (p *Provider) prepareVolumes(ctx context.Context, pod *corev1.Pod, podDir string) (map[string]string, error) {
	return map[string]string{}, nil
}

func (p *Provider) containerMounts(pod *corev1.Pod, c corev1.Container, vols map[string]string) ([]podinit.Mount, error) {
	return nil, nil
}
