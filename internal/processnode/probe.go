package processnode

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/agentsandbox/go-sandboxtest/internal/syncbuf"
)

// probeReadiness marks the container Ready when its readinessProbe passes
// (at once when it has none). Until the first success it probes every
// firstProbeWait, not every periodSeconds, so a fresh sandbox is Ready as
// soon as it serves. The running container's first status goes out here
// (see pendingReportAfter): with its readiness, or as not ready yet when the
// first probe fails or waits for initialDelaySeconds.
func (r *podRun) probeReadiness(ctx context.Context, c *containerRun, inst Instance) {
	probe := c.spec.ReadinessProbe
	if probe == nil {
		r.setReady(c, inst, true)
		return
	}
	delay := time.Duration(probe.InitialDelaySeconds) * time.Second
	if delay > 0 {
		r.p.notify(r)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
	period := time.Duration(max(probe.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(probe.TimeoutSeconds, 1)) * time.Second
	success, failure := max(probe.SuccessThreshold, 1), probe.FailureThreshold
	if failure < 1 {
		failure = 3 // the API's default
	}
	var okRun, failRun int32
	ready := false
	for tries := 1; ; tries++ {
		err := r.runProbe(ctx, c, probe, timeout)
		if err == nil {
			okRun, failRun = okRun+1, 0
		} else {
			okRun, failRun = 0, failRun+1
		}
		switch {
		case tries == 1 && okRun < success && delay <= 0:
			r.p.notify(r) // running, not ready yet
		case !ready && okRun >= success:
			ready = true
			r.setReady(c, inst, true)
		case ready && failRun >= failure:
			ready = false
			r.setReady(c, inst, false)
			r.p.event(r.pod, corev1.EventTypeWarning, "Unhealthy", fmt.Sprintf("Readiness probe failed for %s: %v", c.spec.Name, err))
		}
		wait := period
		if !ready {
			wait = firstProbeWait(probe, tries)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// firstProbeWait is the pause after the tries-th probe until the first
// success. A server's process comes up some 20 ms after it is started (a
// re-executed Go binary initialising its packages), so a 50 ms poll made
// most pods wait for the second or third probe: network probes, which cost
// a refused connection until the port listens, poll every 5 ms, and every
// millisecond for the first ten (a runtime server started warm listens
// within a millisecond of its start, often just after the first probe; a
// refused connect is the node's own, with no round trip through the
// cluster network's helper); an exec probe starts a process in the pod
// each time, so it keeps 50 ms.
func firstProbeWait(probe *corev1.Probe, tries int) time.Duration {
	switch {
	case probe.Exec != nil:
		return 50 * time.Millisecond
	case tries < 10:
		return time.Millisecond
	}
	return 5 * time.Millisecond
}

func (r *podRun) setReady(c *containerRun, inst Instance, ready bool) {
	r.mu.Lock()
	changed := c.inst == inst && c.ready != ready
	if changed {
		c.ready = ready
	}
	r.mu.Unlock()
	if changed {
		r.p.notify(r)
	}
}

// runProbe runs one httpGet, tcpSocket or exec check against the pod's address.
func (r *podRun) runProbe(ctx context.Context, c *containerRun, probe *corev1.Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case probe.HTTPGet != nil:
		g := probe.HTTPGet
		port, err := resolvePort(g.Port, c.spec)
		if err != nil {
			return err
		}
		host := r.ip
		if g.Host != "" {
			host = g.Host
		}
		scheme := "http"
		if g.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, strconv.Itoa(port))+g.Path, nil)
		if err != nil {
			return err
		}
		for _, h := range g.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		resp, err := r.p.probeClient().Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		}
		return nil
	case probe.TCPSocket != nil:
		port, err := resolvePort(probe.TCPSocket.Port, c.spec)
		if err != nil {
			return err
		}
		conn, err := r.p.dial(ctx, "tcp", net.JoinHostPort(r.ip, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case probe.Exec != nil:
		if len(probe.Exec.Command) == 0 {
			return fmt.Errorf("exec probe has no command")
		}
		out := &syncbuf.Buffer{} // stdout and stderr copies share it
		code, err := r.runIn(ctx, c, probe.Exec.Command, nil, out, out)
		if err != nil {
			return fmt.Errorf("exec probe %v: %w", probe.Exec.Command, err)
		}
		if code != 0 {
			return fmt.Errorf("exec probe %v: exit code %d: %s", probe.Exec.Command, code, out.String())
		}
		return nil
	case probe.GRPC != nil:
		conn, err := r.p.dial(ctx, "tcp", net.JoinHostPort(r.ip, strconv.Itoa(int(probe.GRPC.Port))))
		if err != nil {
			return err
		}
		return conn.Close() // a listening port; the gRPC health protocol is not spoken here
	}
	return nil
}

// resolvePort turns a number or a named container port into a number.
func resolvePort(p intstr.IntOrString, c corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, p.StrVal)
}
