package inpod

import (
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func connPair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := NewConn(os.NewFile(uintptr(pair[0]), "a")), NewConn(os.NewFile(uintptr(pair[1]), "b"))
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Messages of any size up to the socket's, with descriptors, arrive whole,
// one per Recv; a closed peer is io.EOF.
func TestConnRecv(t *testing.T) {
	a, b := connPair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	big := strings.Repeat("x", 150<<10)
	if err := a.Send(Message{Op: "first", ID: 1}, w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := a.Send(Message{Op: "second", Error: big}); err != nil {
		t.Fatal(err)
	}
	m, files, err := b.Recv()
	if err != nil || m.Op != "first" || m.ID != 1 || len(files) != 1 {
		t.Fatalf("first: %+v, %d files, %v", m, len(files), err)
	}
	// The descriptor is the pipe's write end: what goes in comes out of r.
	if _, err := files[0].Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	files[0].Close()
	got := make([]byte, 2)
	if _, err := io.ReadFull(r, got); err != nil || string(got) != "ok" {
		t.Fatalf("through the passed descriptor: %q, %v", got, err)
	}
	m, files, err = b.Recv()
	if err != nil || m.Op != "second" || m.Error != big || len(files) != 0 {
		t.Fatalf("second: op %q, %d bytes, %d files, %v", m.Op, len(m.Error), len(files), err)
	}
	a.Close()
	if _, _, err := b.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want io.EOF", err)
	}
}

// A reader waiting for a message holds no buffer: a pod init, and the
// node's loop for each pod, wait so for the pod's whole life.
func TestConnRecvWaitsWithoutBuffer(t *testing.T) {
	a, b := connPair(t)
	var before, waiting runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	done := make(chan error, 1)
	go func() {
		_, _, err := b.Recv()
		done <- err
	}()
	runtime.Gosched()
	for i := 0; i < 50; i++ { // until the goroutine is in recvmsg
		runtime.Gosched()
	}
	runtime.GC()
	runtime.ReadMemStats(&waiting)
	if grown := int64(waiting.HeapAlloc) - int64(before.HeapAlloc); grown > maxMessage/4 {
		t.Errorf("the heap grew by %d bytes while a Recv waited", grown)
	}
	if err := a.Send(Message{Op: "wake"}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
