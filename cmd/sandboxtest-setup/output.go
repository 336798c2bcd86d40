package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/spf13/pflag"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"
)

// APIVersion versions every document -o json|yaml prints. A field is only
// ever added within a version; renaming or removing one makes a new version.
const APIVersion = "sandboxtest.io/v1alpha1"

// TypeMeta starts every document, as in Kubernetes objects.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

func typeMeta(kind string) TypeMeta { return TypeMeta{APIVersion: APIVersion, Kind: kind} }

// outputFlag is -o/--output: "" for the table, or json or yaml.
type outputFlag struct{ format string }

func newOutputFlag(fs *pflag.FlagSet) *outputFlag {
	o := &outputFlag{}
	fs.VarP(o, "output", "o", "output format: json or yaml, a "+APIVersion+" document (default: a table for people)")
	return o
}

func (o *outputFlag) String() string { return o.format }
func (o *outputFlag) Type() string   { return "format" }
func (o *outputFlag) Set(v string) error {
	switch v {
	case "json", "yaml":
		o.format = v
		return nil
	}
	return fmt.Errorf("%q is not an output format; use json or yaml", v)
}

// structured reports whether a document, not a table, is asked for.
func (o *outputFlag) structured() bool { return o.format != "" }

// print writes doc in the chosen format.
func (o *outputFlag) print(w io.Writer, doc any) error {
	var data []byte
	var err error
	switch o.format {
	case "json":
		data, err = json.MarshalIndent(doc, "", "  ")
		data = append(data, '\n')
	default:
		data, err = yaml.Marshal(doc)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// isTerminal reports whether w is a terminal: the tables' ✓ and ✗ are for
// people at one; piped output says ok and FAIL.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// marks returns how a table marks a passed and a failed row on w.
func marks(w io.Writer) (pass, fail string) {
	if isTerminal(w) {
		return "✓", "✗"
	}
	return "ok  ", "FAIL"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
