package podinit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit/inpod"
)

// defaultPath is the PATH the images set (inpod uses it when a command names none).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// start builds an isolated sandbox whose writable /app is a temp dir.
func start(t *testing.T, uid int) (*Sandbox, string) {
	t.Helper()
	if err := Check(); err != nil {
		t.Fatalf("user namespaces are not available here: %v", err)
	}
	dir := t.TempDir()
	for _, d := range []string{"root", "app", "tmp"} {
		assert.NilError(t, os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	var stderr bytes.Buffer
	sb, err := Start(Config{
		Prep: Prep{Isolated: true, UID: uid, GID: uid, PidsLimit: 512},
		Root: filepath.Join(dir, "root"), Hostname: "test-pod", PodIP: "127.0.0.9",
		Mounts: []Mount{{Source: filepath.Join(dir, "app"), Target: "/app"}, {Source: filepath.Join(dir, "tmp"), Target: "/tmp"}},
	}, nil, &stderr)
	if err != nil { // the init has ended then, and its stderr is complete
		t.Fatalf("%v: %s", err, stderr.String())
	}
	t.Cleanup(sb.Kill)
	return sb, dir
}

// run runs argv in sb and returns its output and exit code.
func run(t *testing.T, sb *Sandbox, argv ...string) (string, int) {
	t.Helper()
	r, w, err := os.Pipe()
	assert.NilError(t, err)
	p, err := sb.Exec(Process{Argv: argv, Env: []string{"PATH=" + defaultPath, "FOO=bar"}, Dir: "/app", Stdout: w, Stderr: w})
	w.Close()
	assert.NilError(t, err)
	var out bytes.Buffer
	_, _ = out.ReadFrom(r)
	r.Close()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%v did not exit", argv)
	}
	return out.String(), p.ExitCode()
}

func TestSandboxView(t *testing.T) {
	for _, uid := range []int{0, 1000} {
		t.Run(map[int]string{0: "root", 1000: "uid 1000"}[uid], func(t *testing.T) {
			sb, dir := start(t, uid)
			out, code := run(t, sb, "sh", "-c", "hostname; pwd; id -u; echo $FOO; env | sort | tr '\\n' ' '")
			assert.Equal(t, code, 0, out)
			lines := strings.Split(out, "\n")
			assert.Check(t, is.Equal(lines[0], "test-pod"))
			assert.Check(t, is.Equal(lines[1], "/app"))
			assert.Check(t, is.Equal(lines[2], map[int]string{0: "0", 1000: "1000"}[uid]))
			assert.Check(t, is.Equal(lines[3], "bar"))
			assert.Check(t, is.Equal(lines[4], "FOO=bar PATH="+defaultPath+" PWD=/app "))

			out, code = run(t, sb, "sh", "-c", "echo hi > /app/f && cat /app/f")
			assert.Check(t, is.Equal(code, 0), out)
			data, err := os.ReadFile(filepath.Join(dir, "app", "f"))
			assert.NilError(t, err)
			assert.Check(t, is.Equal(string(data), "hi\n"))

			for _, p := range []string{"/usr/x", "/etc/x", "/x", "/bin/x"} {
				out, code = run(t, sb, "sh", "-c", "echo x > "+p)
				assert.Check(t, code != 0, "writing %s succeeded: %s", p, out)
			}
			for _, p := range []string{"/root", "/home", "/work", dir} {
				_, code = run(t, sb, "ls", p)
				assert.Check(t, code != 0, "%s is visible", p)
			}
			out, code = run(t, sb, "ls", "/proc")
			assert.Check(t, is.Equal(code, 0))
			for _, p := range []string{"/proc/sysrq-trigger", "/proc/sys/kernel/domainname"} {
				out, code = run(t, sb, "sh", "-c", "echo x > "+p)
				assert.Check(t, code != 0, "wrote %s: %s", p, out)
			}
			// The init, sh, ls and (when sh has started it by then) grep.
			out, _ = run(t, sb, "sh", "-c", "ls /proc | grep -c '^[0-9]'")
			n, err := strconv.Atoi(strings.TrimSpace(out))
			assert.Check(t, err == nil && n >= 3 && n <= 4, "processes beyond the pod are visible: %q", out)
			out, code = run(t, sb, "sh", "-c", "mount -t tmpfs x /app; umount /usr")
			assert.Check(t, code != 0, "mounts can be changed: %s", out)
			out, code = run(t, sb, "/usr/bin/python3", "-c", "print(6*7)")
			assert.Check(t, is.Equal(out, "42\n"))
		})
	}
}

func TestSandboxKillEndsEverything(t *testing.T) {
	sb, _ := start(t, 0)
	out, code := run(t, sb, "sh", "-c", "exec >/dev/null 2>&1; sleep 60700 & setsid sleep 60701 & (sleep 60702 &) ; echo started")
	assert.Equal(t, code, 0, out)
	long, err := sb.Exec(Process{Argv: []string{"sleep", "60703"}, Dir: "/"})
	assert.NilError(t, err)
	var pids []int
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if pids = sleepers(t); len(pids) >= 4 {
			return poll.Success()
		}
		return poll.Continue("sleepers: %v", pids)
	})
	sb.Kill()
	<-long.Done()
	assert.Check(t, is.Equal(long.ExitCode(), 128+int(syscall.SIGKILL)))
	for _, pid := range pids {
		err := syscall.Kill(pid, 0)
		assert.Check(t, err == syscall.ESRCH, "pid %d survives its pod: %v", pid, err)
	}
}

// sleepers finds host pids of "sleep 6070x" processes (durations no other
// test of the suite, which runs packages side by side, uses).
func sleepers(t *testing.T) []int {
	t.Helper()
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if strings.HasPrefix(string(b), "sleep\x006070") {
			var pid int
			for _, c := range e.Name() {
				pid = pid*10 + int(c-'0')
			}
			pids = append(pids, pid)
		}
	}
	return pids
}

// BenchmarkSandboxStart measures starting a pod init with its filesystem
// view and killing it: go test -bench . ./internal/podinit
func BenchmarkSandboxStart(b *testing.B) {
	for _, isolated := range []bool{false, true} {
		b.Run(map[bool]string{false: "unisolated", true: "isolated"}[isolated], func(b *testing.B) {
			dir := b.TempDir()
			app := filepath.Join(dir, "app")
			if err := os.Mkdir(app, 0o755); err != nil {
				b.Fatal(err)
			}
			for i := 0; b.Loop(); i++ {
				cfg := Config{Prep: Prep{Isolated: isolated, UID: 1000, GID: 1000}, Hostname: "bench"}
				if isolated {
					cfg.Root = filepath.Join(dir, "root"+strconv.Itoa(i))
					if err := os.Mkdir(cfg.Root, 0o755); err != nil {
						b.Fatal(err)
					}
					cfg.Mounts = []Mount{{Source: app, Target: "/app"}}
				}
				sb, err := Start(cfg, nil, os.Stderr)
				if err != nil {
					b.Fatal(err)
				}
				sb.Kill()
			}
		})
	}
}

// BenchmarkExecTrue measures starting `true` through the init and waiting
// for its exit.
func BenchmarkExecTrue(b *testing.B) {
	dir := b.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		b.Fatal(err)
	}
	sb, err := Start(Config{Prep: Prep{Isolated: true}, Root: root, Hostname: "bench"}, nil, os.Stderr)
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Kill()
	for b.Loop() {
		p, err := sb.Exec(Process{Argv: []string{"/bin/true"}})
		if err != nil {
			b.Fatal(err)
		}
		<-p.Done()
	}
}

// TestWarmRuntimeServer prepares an init with a warm runtime server, as a
// node's spare, then gives it a pod: the exec of the server takes the warm
// process over, which serves from inside the pod's view with the exec's
// environment and working directory. The view is built at Configure, or
// its pod-independent part ahead on a root of the spare's own, which can
// be removed once Configure has returned.
func TestWarmRuntimeServer(t *testing.T) {
	for _, ahead := range []bool{false, true} {
		t.Run(map[bool]string{false: "view at configure", true: "view prepared ahead"}[ahead], func(t *testing.T) {
			testWarmRuntimeServer(t, ahead)
		})
	}
}

func testWarmRuntimeServer(t *testing.T, ahead bool) {
	dir := t.TempDir()
	for _, d := range []string{"root", "app", "spare-root"} {
		assert.NilError(t, os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	viewRoot, root := "", filepath.Join(dir, "root")
	if ahead {
		// Config.Root is then not used: a directory that does not exist.
		viewRoot, root = filepath.Join(dir, "spare-root"), filepath.Join(dir, "absent")
	}
	var stderr bytes.Buffer
	prep := Prep{Isolated: true, UID: 1000, GID: 1000, Warm: inpod.RoleRuntimeServer}
	// stderr is read only once the init has ended (on failure): until then
	// it is being written.
	sb, err := Launch(prep, viewRoot, nil, &stderr)
	if err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	t.Cleanup(sb.Kill)
	err = sb.Configure(Config{
		Prep: prep, Root: root, Hostname: "warm-pod", PodIP: "10.1.2.3",
		Mounts: []Mount{{Source: filepath.Join(dir, "app"), Target: "/app"}},
	})
	if err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	if ahead {
		assert.NilError(t, os.Remove(viewRoot), "the prepared root is still in use")
	}

	addr := freeAddr(t)
	logPath := filepath.Join(dir, "server.log")
	logf, err := os.Create(logPath)
	assert.NilError(t, err)
	defer logf.Close()
	srv := RuntimeServer(addr, "/app", []string{"PATH=" + defaultPath, "FOO=bar"})
	srv.Stdout, srv.Stderr = logf, logf
	p, err := sb.Exec(srv)
	assert.NilError(t, err)

	var res struct {
		Stdout, Stderr string
		ExitCode       int `json:"exit_code"`
	}
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		body := strings.NewReader(`{"command": "sh -c 'hostname; pwd; id -u; echo $FOO; tr \\\\0 \" \" < /proc/$PPID/cmdline; echo; grep -c warm-pod /etc/hosts; ls /work'"}`)
		client := http.Client{Timeout: 2 * time.Second}
		resp, err := client.Post("http://"+addr+"/execute", "application/json", body)
		if err != nil {
			return poll.Continue("%v", err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			return poll.Error(err)
		}
		return poll.Success()
	}, poll.WithTimeout(10*time.Second), poll.WithDelay(10*time.Millisecond))
	log, _ := os.ReadFile(logPath)
	lines := strings.Split(res.Stdout, "\n")
	assert.Assert(t, len(lines) >= 6, "%+v; log: %s", res, log)
	assert.Check(t, is.Equal(lines[0], "warm-pod"))
	assert.Check(t, is.Equal(lines[1], "/app"))
	assert.Check(t, is.Equal(lines[2], "1000"))
	assert.Check(t, is.Equal(lines[3], "bar"))
	// The command's parent is the process started warm, not a new one.
	assert.Check(t, is.Equal(lines[4], inpod.RoleRuntimeServer+" "+inpod.WarmArg+" "), "%+v", res)
	assert.Check(t, is.Equal(lines[5], "1"), "the pod's /etc/hosts: %+v", res)
	assert.Check(t, res.ExitCode != 0, "the host's /work is visible: %+v", res)
	assert.Check(t, is.Contains(string(log), "runtime server listening on http://"+addr+" (root /app)"))

	// A second server is a new process: the warm one is taken once.
	assert.NilError(t, p.Signal(syscall.SIGKILL))
	<-p.Done()
	out, code := run(t, sb, "sh", "-c", "ls /proc | grep -c '^[0-9]'")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains([]string{"3\n", "4\n"}, out), "processes left in the pod: %q", out)
}

// freeAddr is a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// BenchmarkRuntimePodStart measures a python-runtime pod's start on the
// pod's side, from asking for its init to the runtime server's first
// answer: "exec" as before spares (the server exec'd once the view is
// built), "warm" (the server started during the init's prep, as a pod
// without a spare starts), "spare" (the init launched ahead, untimed);
// on a cluster network, reached through Network.DialContext as the node's
// probes reach it, "net-spare" (the init launched ahead, its address given
// with the view), "net-spare-addressed" (launched and addressed ahead) and
// "net-spare-ahead" (launched, addressed and the view's pod-independent
// part built ahead, as the node's spare is):
// go test -run '^$' -bench RuntimePodStart -benchtime 30x ./internal/podinit
func BenchmarkRuntimePodStart(b *testing.B) {
	var n *Network
	podN := 0 // numbers the pods on the network: an address is not reused while its dead pod's veth may linger
	for _, mode := range []string{"exec", "warm", "spare", "net-spare", "net-spare-addressed", "net-spare-ahead"} {
		onNet := strings.HasPrefix(mode, "net-")
		if onNet && n == nil {
			var err error
			if n, err = StartNetwork(NetworkConfig{CIDR: "10.244.0.0/16"}); err != nil {
				b.Fatal(err)
			}
			defer n.Close()
		}
		b.Run(mode, func(b *testing.B) {
			dir := b.TempDir()
			app := filepath.Join(dir, "app")
			if err := os.Mkdir(app, 0o755); err != nil {
				b.Fatal(err)
			}
			prep := Prep{Isolated: true, UID: 1000, GID: 1000}
			if mode != "exec" {
				prep.Warm = RuntimeServerRole
			}
			transport := &http.Transport{DisableKeepAlives: true}
			if onNet {
				transport.DialContext = n.DialContext
			}
			client := &http.Client{Transport: transport}
			var times []time.Duration
			for i := 0; b.Loop(); i++ {
				cfg := Config{Prep: prep, Hostname: "bench", Root: filepath.Join(dir, "root"+strconv.Itoa(i)),
					Mounts: []Mount{{Source: app, Target: "/app"}}}
				if err := os.Mkdir(cfg.Root, 0o755); err != nil {
					b.Fatal(err)
				}
				ip := fmt.Sprintf("127.0.%d.%d", 1+i/250, 2+i%250)
				if onNet {
					podN++
					ip = fmt.Sprintf("10.244.%d.%d", 1+podN/250, 2+podN%250)
					cfg.Net = &PodNet{IP: ip, PrefixLen: 16, Gateway: n.Gateway().String()}
				}
				addr := ip + ":8888"
				var sb *Sandbox
				var err error
				t0 := time.Now()
				switch mode {
				case "spare", "net-spare", "net-spare-addressed", "net-spare-ahead":
					b.StopTimer()
					viewRoot := ""
					if mode == "net-spare-ahead" {
						viewRoot = cfg.Root
					}
					if onNet {
						sb, err = n.Launch(prep, viewRoot, nil, os.Stderr)
					} else {
						sb, err = Launch(prep, viewRoot, nil, os.Stderr)
					}
					if err == nil && mode != "spare" && mode != "net-spare" {
						err = sb.Attach(*cfg.Net)
					}
					b.StartTimer()
					t0 = time.Now()
					if err == nil {
						err = sb.Configure(cfg)
					}
				default:
					sb, err = Start(cfg, nil, os.Stderr)
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := sb.Exec(RuntimeServer(addr, "/app", nil)); err != nil {
					b.Fatal(err)
				}
				for {
					resp, err := client.Get("http://" + addr + "/")
					if err == nil {
						resp.Body.Close()
						break
					}
					time.Sleep(time.Millisecond)
				}
				times = append(times, time.Since(t0))
				b.StopTimer()
				sb.Kill()
				b.StartTimer()
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
		})
	}
}
