//go:build !unix

package setupbin

import (
	"context"
	"errors"
	"io"
)

// lockFile: the local cluster, the only user of this binary, runs on Linux only.
func lockFile(context.Context, string, io.Writer) (func(), error) {
	return nil, errors.New("sandboxtest: building sandboxtest-setup for the local cluster needs Linux")
}
