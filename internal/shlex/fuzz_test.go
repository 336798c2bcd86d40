package shlex

import (
	"reflect"
	"strings"
	"testing"
)

// quote is Python's shlex.quote for every word: single quotes, with each
// ' written as '"'"'.
func quote(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'"'"'`) + "'"
	}
	return strings.Join(q, " ")
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// FuzzSplit checks that Split never panics, fails only with Python's two
// messages, splits text without quotes or backslashes at whitespace, and
// gives back any words that were quoted and joined (its words included).
func FuzzSplit(f *testing.F) {
	for _, s := range []string{"", "echo hello", `a 'b c' "d e"`, `'' ""`, `"a \" \\ \$"`, `a\ b`, "a\\\nb",
		`echo 'unbalanced`, `echo a\`, "sh -c 'echo \"$HOME\"; ls | cat'", "x\x00y z", "\xff\xfe 'é'", `'"'"'`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := Split(s)
		if err != nil {
			if msg := err.Error(); msg != "No closing quotation" && msg != "No escaped character" {
				t.Fatalf("Split(%q): unexpected error %q", s, msg)
			}
		} else {
			if got, err := Split(quote(words)); err != nil || !reflect.DeepEqual(got, words) {
				t.Fatalf("Split(%q) = %q, but Split of them quoted (%q) = %q, %v", s, words, quote(words), got, err)
			}
		}
		if !strings.ContainsAny(s, `'"\`) {
			if want := strings.FieldsFunc(s, isSpace); err != nil || !reflect.DeepEqual(words, want) && len(want)+len(words) > 0 {
				t.Fatalf("Split(%q) = %q, %v; want the whitespace-separated fields %q", s, words, err, want)
			}
		}
		// Any words survive quoting: here s cut at NUL bytes.
		in := strings.Split(s, "\x00")
		if got, err := Split(quote(in)); err != nil || !reflect.DeepEqual(got, in) {
			t.Fatalf("Split(%q) = %q, %v; want %q", quote(in), got, err, in)
		}
	})
}
