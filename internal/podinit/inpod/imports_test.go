package inpod

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// earlyImports are the imports whose initialisers run before the
// Kubernetes and protobuf packages of the binaries the init is re-executed
// from. An import outside them (net, net/http, path/filepath, a package
// that needs one of those, such as github.com/vishvananda/netlink, which
// imports net) makes every pod start wait for most of those initialisers:
// measure it with GODEBUG=inittrace=1 (see BENCHMARKS.md) before adding it
// here.
var earlyImports = map[string]bool{
	"encoding/json": true, "errors": true, "fmt": true, "io": true, "os": true, "os/signal": true,
	"path": true, "runtime": true, "sort": true, "strconv": true, "strings": true, "sync": true,
	"syscall": true, "golang.org/x/sys/unix": true,
}

func TestImportsAreInitialisedEarly(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !earlyImports[p] {
				t.Errorf("%s imports %q, which may be initialised after the binary's Kubernetes packages and delay every pod start; see earlyImports", name, p)
			}
		}
	}
}
