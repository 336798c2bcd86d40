package connect

import (
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestDirect(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"http://router.example:8080", "http://router.example:8080"},
		{"https://router.example/", "https://router.example"},
		{" http://10.0.0.1:8080/ ", "http://10.0.0.1:8080"},
		{"http://router.example/prefix/", "http://router.example/prefix"},
		{"http://[fd00::1]:8080", "http://[fd00::1]:8080"},
	} {
		c, err := Direct(tc.in)
		assert.Assert(t, err, tc.in)
		assert.Check(t, is.Equal(c.URL(), tc.want))
		assert.Check(t, is.Equal(c.Mode(), ModeDirect))
		assert.Check(t, is.Equal(c.Describe(), "direct to "+tc.want))
		assert.Check(t, c.Close())
	}
	for _, tc := range []struct {
		in, err string
	}{
		{"", "router URL is empty"},
		{"router.example:8080", `has scheme "router.example", not http or https`},
		{"localhost", `has scheme "", not http or https`},
		{"ftp://router.example", `has scheme "ftp"`},
		{"http://", "has no host"},
		{"http://:8080", "has no host"},
		{"http://user:pw@router.example", "carries user info"},
		{"http://router.example/?a=b", "has a query or fragment"},
		{"http://router.example/#x", "has a query or fragment"},
		{"http://router.example:99999", `invalid port "99999"`},
		{"http://router.example:0", `invalid port "0"`},
		{"http://router example", "does not parse"},
	} {
		_, err := Direct(tc.in)
		assert.Check(t, is.ErrorContains(err, tc.err), "input %q", tc.in)
	}
}
