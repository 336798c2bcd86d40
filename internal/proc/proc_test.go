package proc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a parent process that starts a
// grandchild with Start, prints its pid and sleeps until killed.
const helperEnv = "SANDBOXTEST_PROC_HELPER_PARENT"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		p, err := Start(Spec{Name: "sleeper", Path: "/bin/sleep", Args: []string{"600"}})
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		fmt.Println(p.Pid())
		time.Sleep(10 * time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// state is the field after "(comm)"
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive after %s", pid, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitFileLine(t *testing.T, path string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(path)
		if i := strings.IndexByte(string(b), '\n'); i > 0 {
			return string(b[:i])
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line in %s after %s", path, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStopKillsChildAndGrandchild(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "logs", "sh.log")
	pidFile := filepath.Join(dir, "grandchild.pid")
	// The grandchild ignores SIGTERM, so it takes the SIGKILL after grace.
	script := fmt.Sprintf(`sh -c 'trap "" TERM; echo $$ > %s; exec sleep 600' & echo started; wait`, pidFile)
	p, err := Start(Spec{Name: "shell", Path: "/bin/sh", Args: []string{"-c", script}, LogPath: log})
	if err != nil {
		t.Fatal(err)
	}
	gc, err := strconv.Atoi(strings.TrimSpace(waitFileLine(t, pidFile, 5*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	// The shell echoes after starting the grandchild, which may write its
	// pid first: wait for the echo too, or Stop can come before it.
	waitFileLine(t, log, 5*time.Second)
	if !alive(p.Pid()) || !alive(gc) {
		t.Fatalf("child %d or grandchild %d not running", p.Pid(), gc)
	}
	if pgid, _ := syscall.Getpgid(gc); pgid != p.Pid() {
		t.Fatalf("grandchild pgid %d, want %d", pgid, p.Pid())
	}
	start := time.Now()
	if err := p.Stop(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Logf("Stop took %s", time.Since(start))
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if p.ExitErr() == nil {
		t.Error("ExitErr nil for a killed process")
	}
	waitGone(t, p.Pid(), time.Second)
	waitGone(t, gc, 2*time.Second)
	if err := p.Stop(time.Second); err != nil { // idempotent
		t.Fatal(err)
	}
	if got := p.LogTail(5); got != "started" {
		t.Errorf("LogTail = %q, want %q", got, "started")
	}
}

func TestStopGracefulExit(t *testing.T) {
	p, err := Start(Spec{Path: "/bin/sleep", Args: []string{"600"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "sleep" {
		t.Errorf("Name = %q", p.Name())
	}
	start := time.Now()
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("SIGTERM should end sleep at once, Stop took %s", d)
	}
	var ee *exec.ExitError
	if !errors.As(p.ExitErr(), &ee) {
		t.Errorf("ExitErr = %v, want *exec.ExitError", p.ExitErr())
	}
}

func TestExitedByItself(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "x.log")
	if err := os.WriteFile(log, []byte("old line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Start(Spec{Path: "/bin/sh", Args: []string{"-c", "for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; echo $FOO; exit 3"}, Env: []string{"FOO=bar"}, LogPath: log})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not done")
	}
	var ee *exec.ExitError
	if !errors.As(p.ExitErr(), &ee) || ee.ExitCode() != 3 {
		t.Fatalf("ExitErr = %v, want exit status 3", p.ExitErr())
	}
	if got, want := p.LogTail(3), "line 5\noops\nbar"; got != want {
		t.Errorf("LogTail(3) = %q, want %q", got, want)
	}
	if got := p.LogTail(100); !strings.HasPrefix(got, "old line\nline 1\n") {
		t.Errorf("log not appended: %q", got)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestStartErrorNamesBinary(t *testing.T) {
	_, err := Start(Spec{Name: "kube-apiserver", Path: "/nonexistent/kube-apiserver"})
	if err == nil || !strings.Contains(err.Error(), "kube-apiserver") || !strings.Contains(err.Error(), "/nonexistent/kube-apiserver") {
		t.Fatalf("err = %v", err)
	}
}

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d not free: %v", port, err)
	}
	l.Close()
}

// TestParentSIGKILLKillsChild re-executes the test binary as a parent that
// starts a grandchild, SIGKILLs that parent and expects the grandchild to die.
func TestParentSIGKILLKillsChild(t *testing.T) {
	parent := exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), helperEnv+"=1")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer parent.Process.Kill()
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		if s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(10 * time.Second):
		t.Fatal("helper parent printed no pid")
	}
	gc, err := strconv.Atoi(line)
	if err != nil {
		t.Fatalf("helper parent said %q", line)
	}
	defer syscall.Kill(-gc, syscall.SIGKILL) // in case the test fails
	if !alive(gc) {
		t.Fatalf("grandchild %d not running", gc)
	}
	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	waitGone(t, gc, 2*time.Second)
}
