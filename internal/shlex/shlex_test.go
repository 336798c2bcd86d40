package shlex

import (
	"reflect"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "", want: nil},
		{in: " \t\n ", want: nil},
		{in: "echo hello", want: []string{"echo", "hello"}},
		{in: "  a   b\tc\nd  ", want: []string{"a", "b", "c", "d"}},
		{in: `a 'b c' "d e"`, want: []string{"a", "b c", "d e"}},
		{in: `a'b'"c"d`, want: []string{"abcd"}},
		{in: `'' ""`, want: []string{"", ""}},
		{in: `x '' y`, want: []string{"x", "", "y"}},
		{in: `'a "b" \c'`, want: []string{`a "b" \c`}},
		{in: `"a 'b' \" \\ \$ \x"`, want: []string{`a 'b' " \ \$ \x`}},
		{in: `a\ b \'c \"d \\e \x`, want: []string{"a b", "'c", `"d`, `\e`, "x"}},
		{in: "a\\\nb", want: []string{"a\nb"}},
		{in: "echo # not a comment", want: []string{"echo", "#", "not", "a", "comment"}},
		{in: "héllo 'wörld ✓'", want: []string{"héllo", "wörld ✓"}},
		{in: "sh -c 'sleep 30 & sleep 30'", want: []string{"sh", "-c", "sleep 30 & sleep 30"}},
		{in: `echo 'unbalanced`, wantErr: "No closing quotation"},
		{in: `echo "unbalanced`, wantErr: "No closing quotation"},
		{in: `echo "a\`, wantErr: "No escaped character"},
		{in: `echo a\`, wantErr: "No escaped character"},
	} {
		got, err := Split(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Split(%q) = %q, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Split(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
