package sandboxtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-cmp/cmp"
)

// AssertFile fails t unless path holds exactly want.
func (sb *Sandbox) AssertFile(t TestingT, path, want string) {
	t.Helper()
	got, err := sb.ReadFileE(sb.testContext(), path)
	if err != nil {
		fatalf(t, "%v", err)
		return
	}
	if string(got) != want {
		fatalf(t, "sandboxtest: file %q in %s differs (-want +got):\n%s", path, sb, cmp.Diff(want, string(got)))
	}
}

// AssertFileContains fails t unless path contains substr.
func (sb *Sandbox) AssertFileContains(t TestingT, path, substr string) {
	t.Helper()
	got, err := sb.ReadFileE(sb.testContext(), path)
	if err != nil {
		fatalf(t, "%v", err)
		return
	}
	if !strings.Contains(string(got), substr) {
		fatalf(t, "sandboxtest: file %q in %s does not contain %q; it holds %d bytes:\n%s", path, sb, substr, len(got), tailOf(string(got), tailLines))
	}
}

// AssertNoFile fails t if path exists.
func (sb *Sandbox) AssertNoFile(t TestingT, path string) {
	t.Helper()
	ok, err := sb.ExistsE(sb.testContext(), path)
	if err != nil {
		fatalf(t, "%v", err)
		return
	}
	if ok {
		fatalf(t, "sandboxtest: %q exists in %s, want no such file", path, sb)
	}
}

// AssertGolden compares actual with testdata/<name>; with
// -sandboxtest.update (or SANDBOXTEST_UPDATE=1) it writes the file instead.
func AssertGolden(t TestingT, actual, name string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if updateGolden() {
		err := os.MkdirAll(filepath.Dir(path), 0o755)
		if err == nil {
			err = os.WriteFile(path, []byte(actual), 0o644)
		}
		if err != nil {
			fatalf(t, "sandboxtest: updating golden file %s: %v", path, err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		fatalf(t, "sandboxtest: golden file %s does not exist; create it with: go test -run '<this test>' -sandboxtest.update", path)
		return
	} else if err != nil {
		fatalf(t, "sandboxtest: reading golden file %s: %v", path, err)
		return
	}
	if string(want) != actual {
		fatalf(t, "sandboxtest: output differs from golden file %s (-want +got):\n%s\nupdate it with -sandboxtest.update if the change is right", path, cmp.Diff(string(want), actual))
	}
}

func tailOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// fatalf reports and stops the test: TestingT has Errorf and FailNow, not Fatalf.
func fatalf(t TestingT, format string, args ...any) {
	t.Helper()
	t.Errorf(format, args...)
	t.FailNow()
}
