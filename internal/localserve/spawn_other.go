//go:build !linux

package localserve

import (
	"errors"
	"os/exec"
)

func spawn(*exec.Cmd, func(error)) error {
	return errors.New("the local cluster needs Linux")
}

func killGroup(int) {}
