package sandboxtest

import (
	"context"
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
	got, err := sb.ReadFileE(context.Background(), path)
	if err != nil {
		t.Errorf("%v", err)
		t.FailNow()
		return
	}
	if string(got) != want {
		t.Errorf("sandboxtest: file %q in %s differs (-want +got):\n%s", path, sb, cmp.Diff(want, string(got)))
		t.FailNow()
	}
}

// AssertFileContains fails t unless path contains substr.
func (sb *Sandbox) AssertFileContains(t TestingT, path, substr string) {
	t.Helper()
	got, err := sb.ReadFileE(context.Background(), path)
	if err != nil {
		t.Errorf("%v", err)
		t.FailNow()
		return
	}
	if !strings.Contains(string(got), substr) {
		t.Errorf("sandboxtest: file %q in %s does not contain %q; it holds %d bytes:\n%s", path, sb, substr, len(got), tailOf(string(got), tailLines))
		t.FailNow()
	}
}

// AssertNoFile fails t if path exists.
func (sb *Sandbox) AssertNoFile(t TestingT, path string) {
	t.Helper()
	ok, err := sb.ExistsE(context.Background(), path)
	if err != nil {
		t.Errorf("%v", err)
		t.FailNow()
		return
	}
	if ok {
		t.Errorf("sandboxtest: %q exists in %s, want no such file", path, sb)
		t.FailNow()
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
			t.Errorf("sandboxtest: updating golden file %s: %v", path, err)
			t.FailNow()
		}
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Errorf("sandboxtest: golden file %s does not exist; create it with: go test -run '<this test>' -sandboxtest.update", path)
		t.FailNow()
		return
	} else if err != nil {
		t.Errorf("sandboxtest: reading golden file %s: %v", path, err)
		t.FailNow()
		return
	}
	if string(want) != actual {
		t.Errorf("sandboxtest: output differs from golden file %s (-want +got):\n%s\nupdate it with -sandboxtest.update if the change is right", path, cmp.Diff(string(want), actual))
		t.FailNow()
	}
}

func tailOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
