// Package shlex splits a command line into words as Python's shlex.split
// does: how upstream's runtime turns the /execute command into argv.
package shlex

import (
	"errors"
	"strings"
)

// Split splits cmd into words the way Python's shlex.split(cmd) does
// (posix=True, comments=False), which is how upstream turns the /execute
// command into argv. The error texts are Python's, so the "Failed to execute
// command: ..." stderr matches upstream.
//
// Python's rules differ from sh in small ways that are kept here: inside
// double quotes a backslash only escapes '"' and '\' (so "\$" stays "\$"),
// and outside quotes a backslash-newline is a literal newline, not a line
// continuation.
func Split(cmd string) ([]string, error) {
	var (
		words   []string
		word    strings.Builder
		inWord  bool // a word has started, even if empty (e.g. '')
		quote   byte // 0, '\'' or '"'
		escaped bool
	)
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case escaped:
			if quote == '"' && c != '"' && c != '\\' {
				word.WriteByte('\\')
			}
			word.WriteByte(c)
			escaped = false
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				word.WriteByte(c)
			}
		case quote == '"':
			switch c {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				word.WriteByte(c)
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		default:
			inWord = true
			switch c {
			case '\'', '"':
				quote = c
			case '\\':
				escaped = true
			default:
				word.WriteByte(c)
			}
		}
	}
	switch {
	case escaped:
		return nil, errors.New("No escaped character")
	case quote != 0:
		return nil, errors.New("No closing quotation")
	}
	if inWord {
		words = append(words, word.String())
	}
	return words, nil
}
