package podinit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
)

// serveOnce is a python one-liner that accepts one connection on the pod's
// address and answers with the pod's hostname.
const serveOnce = `import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((sys.argv[1], 8080)); s.listen()
while True:
    c,_=s.accept(); c.sendall(socket.gethostname().encode()); c.close()`

func startOnNet(t *testing.T, n *Network, name, ip string) *Sandbox {
	t.Helper()
	dir := t.TempDir()
	root, app := filepath.Join(dir, "root"), filepath.Join(dir, "app")
	assert.NilError(t, os.Mkdir(root, 0o755))
	assert.NilError(t, os.Mkdir(app, 0o755))
	var stderr bytes.Buffer
	sb, err := n.Start(Config{
		Prep: Prep{Isolated: true, UID: 1000, GID: 1000}, Root: root, Hostname: name, PodIP: ip,
		Net:    &PodNet{IP: ip, PrefixLen: 16, Gateway: n.Gateway().String()},
		Mounts: []Mount{{Source: app, Target: "/app"}},
	}, nil, &stderr)
	if err != nil { // the init has ended then, and its stderr is complete
		t.Fatalf("%v: %s", err, stderr.String())
	}
	t.Cleanup(sb.Kill)
	return sb
}

func TestClusterNetwork(t *testing.T) {
	n, err := StartNetwork(NetworkConfig{CIDR: "10.244.0.0/16", LocalAddrs: []string{"10.0.0.1"}})
	assert.NilError(t, err)
	t.Cleanup(n.Close)
	assert.Check(t, is.Equal(n.Gateway().String(), "10.244.0.1"))

	a := startOnNet(t, n, "pod-a", "10.244.0.2")
	b := startOnNet(t, n, "pod-b", "10.244.0.3")

	// Before any traffic, each side has the other's link address (no ARP
	// exchange for the first connection): the pod the bridge's, for good,
	// and the cluster network the pod's.
	podARP, _ := run(t, b, "cat", "/proc/net/arp")
	assert.Check(t, is.Regexp(`(?m)^10\.244\.0\.1\s+0x1\s+0x6\s+02:53:42:54:00:01\s`, podARP))
	netARP, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/arp", n.Pid()))
	assert.NilError(t, err)
	assert.Check(t, is.Regexp(`(?m)^10\.244\.0\.3\s+0x1\s+0x2\s+([0-9a-f]{2}:){5}[0-9a-f]{2}\s`, string(netARP)))
	srv, err := a.Exec(Process{Argv: []string{"/usr/bin/python3", "-c", serveOnce, "10.244.0.2"}, Env: []string{"PATH=" + defaultPath}, Stderr: os.Stderr})
	assert.NilError(t, err)
	t.Cleanup(func() { srv.Stop(0) })

	// The node reaches a pod through the cluster network.
	var conn net.Conn
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if conn, err = n.DialContext(ctx, "tcp", "10.244.0.2:8080"); err != nil {
			return poll.Continue("dial: %v", err)
		}
		return poll.Success()
	}, poll.WithTimeout(20*time.Second), poll.WithDelay(50*time.Millisecond))
	got, err := io.ReadAll(conn)
	conn.Close()
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(got), "pod-a"))
	assert.Check(t, is.Equal(conn.RemoteAddr().String(), "10.244.0.2:8080"))

	// Dials use up the node's unconnected sockets and get more.
	for i := range 3 * socketBatch {
		conn, err := n.DialContext(context.Background(), "tcp", "10.244.0.2:8080")
		assert.NilError(t, err, "dial %d", i)
		got, err := io.ReadAll(conn)
		conn.Close()
		assert.Check(t, err == nil && string(got) == "pod-a", "dial %d: %q, %v", i, got, err)
	}

	// A dial ends with its context: nothing answers for an address no pod has.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = n.DialContext(ctx, "tcp", "10.244.0.99:80")
	assert.Check(t, errors.Is(err, context.DeadlineExceeded), "%v", err)

	// One pod reaches another.
	out, code := run(t, b, "/usr/bin/python3", "-c", "import socket; s=socket.create_connection(('10.244.0.2', 8080), 5); print(s.recv(100).decode())")
	assert.Check(t, is.Equal(code, 0), out)
	assert.Check(t, is.Equal(out, "pod-a\n"))

	// Pods have eth0 with their address and no route beyond the cluster.
	out, _ = run(t, b, "cat", "/proc/net/route")
	assert.Check(t, strings.Contains(out, "eth0"), out)
	out, code = run(t, b, "/usr/bin/python3", "-c", "import socket; socket.create_connection(('1.1.1.1', 80), 2)")
	assert.Check(t, code != 0, "a pod reached 1.1.1.1: %s", out)

	// A closed port is refused, with the address named.
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = n.DialContext(ctx, "tcp", "10.244.0.3:9")
	assert.Check(t, is.ErrorContains(err, "connection refused"))
	assert.Check(t, is.ErrorContains(err, "10.244.0.3:9"))

	// A listener inside serves pods from the host.
	ln, err := n.Listen("tcp", "10.0.0.1:443")
	assert.NilError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Write([]byte("from the node"))
			c.Close()
		}
	}()
	out, code = run(t, b, "/usr/bin/python3", "-c", "import socket; s=socket.create_connection(('10.0.0.1', 443), 5); print(s.recv(100).decode())")
	assert.Check(t, is.Equal(code, 0), out)
	assert.Check(t, is.Equal(out, "from the node\n"))

	// Killing a pod through the network ends it.
	a.Kill()
	select {
	case <-srv.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the pod's server outlived its pod")
	}
}

// BenchmarkNetworkStart measures starting a pod init on the cluster network
// (namespaces, veth, address, view) and killing it:
// go test -run '^$' -bench NetworkStart ./internal/podinit
func BenchmarkNetworkStart(b *testing.B) {
	n, err := StartNetwork(NetworkConfig{CIDR: "10.244.0.0/16"})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	dir := b.TempDir()
	for i := 0; b.Loop(); i++ {
		root := filepath.Join(dir, fmt.Sprint("root", i))
		if err := os.Mkdir(root, 0o755); err != nil {
			b.Fatal(err)
		}
		ip := fmt.Sprintf("10.244.%d.%d", 1+i/250, 2+i%250)
		sb, err := n.Start(Config{Prep: Prep{Isolated: true, UID: 1000, GID: 1000}, Root: root, Hostname: "bench",
			Net: &PodNet{IP: ip, PrefixLen: 16, Gateway: n.Gateway().String()}}, nil, os.Stderr)
		if err != nil {
			b.Fatal(err)
		}
		sb.Kill()
	}
}

func TestNetworkRefusesABadCIDR(t *testing.T) {
	for cidr, want := range map[string]string{
		"10.244.0.0":    "not an IPv4 CIDR",
		"fd00::/64":     "not an IPv4 CIDR",
		"10.244.0.0/31": "too small",
	} {
		_, err := StartNetwork(NetworkConfig{CIDR: cidr})
		assert.Check(t, is.ErrorContains(err, want), cidr)
	}
}

// TestAddressGivenAhead launches inits and gives their pods an address
// before Configure, as a node does for its spare: with the same address
// Configure keeps it; with another, the pod has only the new one, and its
// default route.
func TestAddressGivenAhead(t *testing.T) {
	n, err := StartNetwork(NetworkConfig{CIDR: "10.244.0.0/16"})
	assert.NilError(t, err)
	t.Cleanup(n.Close)
	// bind fails with EADDRNOTAVAIL for an address the pod does not have.
	const binds = `import socket,sys
for a in sys.argv[1:]:
    try:
        socket.socket().bind((a, 0)); print(a, "ok")
    except OSError as e:
        print(a, e.errno)`
	for _, tc := range []struct{ ahead, pod, gone string }{
		{ahead: "10.244.0.5", pod: "10.244.0.5"},
		{ahead: "10.244.0.6", pod: "10.244.0.7", gone: "10.244.0.6"},
	} {
		t.Run(tc.ahead+" then "+tc.pod, func(t *testing.T) {
			prep := Prep{Isolated: true, UID: 1000, GID: 1000}
			var stderr bytes.Buffer
			sb, err := n.Launch(prep, "", nil, &stderr)
			assert.NilError(t, err, stderr.String())
			t.Cleanup(sb.Kill)
			pn := func(ip string) PodNet { return PodNet{IP: ip, PrefixLen: 16, Gateway: n.Gateway().String()} }
			assert.NilError(t, sb.Attach(pn(tc.ahead)))
			dir := t.TempDir()
			root, app := filepath.Join(dir, "root"), filepath.Join(dir, "app")
			assert.NilError(t, os.Mkdir(root, 0o755))
			assert.NilError(t, os.Mkdir(app, 0o755))
			podNet := pn(tc.pod)
			err = sb.Configure(Config{Prep: prep, Root: root, Hostname: "ahead", PodIP: tc.pod, Net: &podNet,
				Mounts: []Mount{{Source: app, Target: "/app"}}})
			assert.NilError(t, err, stderr.String())

			args := []string{"/usr/bin/python3", "-c", binds, tc.pod}
			want := tc.pod + " ok\n"
			if tc.gone != "" {
				args = append(args, tc.gone)
				want += tc.gone + " 99\n" // EADDRNOTAVAIL
			}
			out, code := run(t, sb, args...)
			assert.Check(t, is.Equal(code, 0), out)
			assert.Check(t, is.Equal(out, want))
			out, _ = run(t, sb, "cat", "/proc/net/route")
			assert.Check(t, is.Regexp(`(?m)^eth0\s+00000000\s+0100F40A\s`, out), "no default route via the bridge")
		})
	}
}
