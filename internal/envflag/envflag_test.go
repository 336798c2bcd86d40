package envflag

import "testing"

func TestBool(t *testing.T) {
	for _, c := range []struct {
		value   string
		def     bool
		want    bool
		wantErr bool
	}{
		{"", false, false, false},
		{"", true, true, false},
		{"1", false, true, false},
		{" true ", false, true, false},
		{"TRUE", false, true, false},
		{"0", true, false, false},
		{"False", true, false, false},
		{"yes", false, false, true},
		{"maybe", true, true, true},
	} {
		t.Setenv("SANDBOXTEST_ENVTEST", c.value)
		got, err := Bool("SANDBOXTEST_ENVTEST", c.def)
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("Bool(%q, %v) = %v, %v; want %v, error %v", c.value, c.def, got, err, c.want, c.wantErr)
		}
	}
}

func TestCI(t *testing.T) {
	for value, want := range map[string]bool{"": false, "true": true, "1": true, "false": false, "0": false, "woodpecker": true} {
		t.Setenv("CI", value)
		if got := CI(); got != want {
			t.Errorf("CI=%q: CI() = %v, want %v", value, got, want)
		}
	}
}
