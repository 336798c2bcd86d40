package podinit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit/inpod"
	"github.com/agentsandbox/go-sandboxtest/internal/runtimeserver"
)

// RuntimeServerRole is the role of RuntimeServer's process, which a pod
// init can start warm (Prep.Warm).
const RuntimeServerRole = inpod.RoleRuntimeServer

// RuntimeServer returns the Process that serves the python runtime's API
// inside a pod, as the image's own server does: on addr, rooted at root,
// running commands with env.
func RuntimeServer(addr, root string, env []string) Process {
	return Process{
		Argv: []string{inpod.RoleRuntimeServer, "--listen", addr, "--root", root},
		Env:  env,
		Dir:  root,
		Self: true,
	}
}

// runRuntimeServer is the runtime server role: the container's main process
// for python-runtime images. Its log is its stdout.
func runRuntimeServer(args []string) error {
	fs := flag.NewFlagSet(inpod.RoleRuntimeServer, flag.ContinueOnError)
	addr := fs.String("listen", "", "host:port to serve on")
	root := fs.String("root", "/app", "directory the file API and commands work in")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	rs := &runtimeserver.Server{Root: *root, Env: os.Environ(), Log: os.Stdout}
	srv := &http.Server{Handler: rs.Handler(), ReadHeaderTimeout: 30 * time.Second}
	fmt.Printf("runtime server listening on http://%s (root %s)\n", *addr, *root)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		rs.Close() // running commands end now
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
