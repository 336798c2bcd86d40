package sandboxtest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/agentsandbox/go-sandboxtest/sandboxtest"
)

const template = "python-sandbox-template"

func TestMain(m *testing.M) {
	// This repository's own tests (and the Examples) run on a local cluster,
	// whatever kubeconfig or CI variable the machine has, unless
	// SANDBOXTEST_LOCAL says otherwise.
	if os.Getenv("SANDBOXTEST_LOCAL") == "" {
		os.Setenv("SANDBOXTEST_LOCAL", "1")
	}
	sandboxtest.Main(m)
}

func TestRunAndAssert(t *testing.T) {
	sb := sandboxtest.New(t, template)
	res := sb.Run("python3 -c 'print(6*7)'")
	res.Assert(t, sandboxtest.Expected{ExitCode: 0, Out: "42\n", Err: sandboxtest.None})
	assert.Check(t, res.Duration > 0)

	res = sb.Run("sh -c 'echo out; echo err >&2; exit 3'")
	res.Assert(t, sandboxtest.Expected{ExitCode: 3, Out: "out\n", Err: "err\n"})

	res = sb.RunOK("ls")
	assert.Check(t, is.Equal(res.ExitCode, 0))

	assert.Check(t, sb.ClaimName() != "" && sb.SandboxName() != "" && sb.PodName() != "")
	assert.Check(t, strings.HasPrefix(sb.PodIP(), "10.244."), sb.PodIP())
	assert.Check(t, is.Equal(sb.Namespace(), "default"))
	assert.Check(t, is.Equal(sb.Template(), template))
	assert.Check(t, is.Len(sb.History(), 3))
}

func TestCommandNotFoundIsAResult(t *testing.T) {
	sb := sandboxtest.New(t, template)
	res, err := sb.RunE(context.Background(), "no-such-command-xyz --flag")
	assert.NilError(t, err)
	assert.Check(t, res.ExitCode != 0)
	assert.Check(t, is.Contains(res.Stderr, "no-such-command-xyz"))
}

func TestFiles(t *testing.T) {
	sb := sandboxtest.New(t, template)
	sb.WriteFile("dir/sub/in.txt", []byte("x"))
	assert.Check(t, is.Equal(string(sb.ReadFile("dir/sub/in.txt")), "x"))
	sb.AssertFile(t, "dir/sub/in.txt", "x")
	assert.Check(t, sb.Exists("dir/sub/in.txt"))
	assert.Check(t, !sb.Exists("dir/nothing"))
	sb.AssertNoFile(t, "dir/nothing")

	entries := sb.ListDir("dir/sub")
	assert.Assert(t, is.Len(entries, 1))
	assert.Check(t, is.Equal(entries[0].Name, "in.txt"))
	assert.Check(t, is.Equal(entries[0].Size, int64(1)))
	assert.Check(t, !entries[0].IsDir)
	top := sb.ListDir("dir")
	assert.Assert(t, is.Len(top, 1))
	assert.Check(t, top[0].IsDir)

	sb.WriteFile("log", []byte("step 1\nstep 2 done\n"))
	sb.AssertFileContains(t, "log", "done")

	bin := make([]byte, 1<<20)
	_, _ = rand.Read(bin)
	sb.WriteFile("bin/blob", bin)
	assert.Check(t, bytes.Equal(sb.ReadFile("bin/blob"), bin), "binary content changed in the round trip")

	sb.WriteFile("empty", nil)
	assert.Check(t, is.Len(sb.ReadFile("empty"), 0))
	assert.Check(t, sb.Exists("empty"))

	name := "dïr ünï/fïlé with space.txt"
	sb.WriteFile(name, []byte("ü"))
	sb.AssertFile(t, name, "ü")
	sb.RunOK("test -f '" + name + "'")

	_, err := sb.ReadFileE(context.Background(), "missing.txt")
	assert.Check(t, errors.Is(err, sandboxtest.ErrNotExist), "%v", err)
}

func TestPathEscapeIsRefused(t *testing.T) {
	sb := sandboxtest.New(t, template)
	for _, p := range []string{"../../etc/passwd", "a/../../etc/passwd"} {
		err := sb.WriteFileE(context.Background(), p, []byte("x"))
		assert.Check(t, is.ErrorContains(err, "escapes"), p)
		_, err = sb.ReadFileE(context.Background(), p)
		assert.Check(t, is.ErrorContains(err, "escapes"), p)
	}
}

func TestLargeOutput(t *testing.T) {
	sb := sandboxtest.New(t, template)
	res := sb.RunOK("python3 -c 'import sys; sys.stdout.write(\"x\" * (16 << 20))'")
	assert.Check(t, is.Equal(len(res.Stdout), 16<<20))
}

func TestCancelledRun(t *testing.T) {
	sb := sandboxtest.New(t, template)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := sb.RunE(ctx, "sleep 30")
	assert.Check(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.Check(t, time.Since(start) < 10*time.Second, "RunE returned after %s", time.Since(start))
	sb.RunOK("true") // the sandbox still works
}

func TestUnknownTemplate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := sandboxtest.NewE(ctx, t, "no-such-template")
	assert.Check(t, is.ErrorContains(err, `template "no-such-template" not found in namespace "default"`))
	assert.Check(t, is.ErrorContains(err, template))
	assert.Check(t, is.ErrorContains(err, "sandboxtest-setup deploy"))
}

func TestParallel(t *testing.T) {
	for i := range 10 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			sb := sandboxtest.New(t, template)
			sb.RunOK(fmt.Sprintf("echo %d", i)).Assert(t, sandboxtest.Expected{Out: fmt.Sprintf("%d\n", i)})
			sb.WriteFile("n", []byte(fmt.Sprint(i)))
			sb.AssertFile(t, "n", fmt.Sprint(i))
		})
	}
}

func TestGolden(t *testing.T) {
	sb := sandboxtest.New(t, template)
	res := sb.RunOK("printf 'golden\\n'")
	sandboxtest.AssertGolden(t, res.Stdout, "golden.golden")
}

func TestServerPortFromTemplate(t *testing.T) {
	// python-env-template serves on 9999 and says so; New finds it there.
	sb := sandboxtest.New(t, "python-env-template")
	sb.RunOK("printenv SANDBOXTEST_GREETING").Assert(t, sandboxtest.Expected{Out: "hello from the template\n"})
}
