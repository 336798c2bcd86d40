//go:build !linux

package localstate

func forgetWrittenFile(string) {}
