// Package envflag reads the boolean switches of sandboxtest's
// configuration (SANDBOXTEST_QUIET, SANDBOXTEST_REQUIRE, CI, ...) with one
// syntax, so every switch accepts the same values.
package envflag

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Bool reads the variable name with strconv.ParseBool's syntax (1, t, T,
// TRUE, true, True, 0, f, F, FALSE, false, False; surrounding spaces are
// ignored). Unset or empty gives def. Any other value gives def and an
// error naming the variable and the values it takes.
func Bool(name string, def bool) (bool, error) {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return def, fmt.Errorf("%s=%q is not a boolean; use 1 or true to turn it on, 0 or false to turn it off (or unset it)", name, os.Getenv(name))
	}
	return b, nil
}

// CI reports whether the CI variable marks a CI run: a true boolean, or a
// value that is no boolean at all (some CI systems set CI to their own
// name). Unset, empty or a false boolean means no.
func CI() bool { return IsCI(os.Getenv("CI")) }

// IsCI is CI for the value v of the variable.
func IsCI(v string) bool {
	v = strings.TrimSpace(v)
	b, err := strconv.ParseBool(v)
	return v != "" && (b || err != nil)
}
