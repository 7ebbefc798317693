package requestid

import (
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantKept bool
	}{
		{name: "plain id kept", in: "req-123", wantKept: true},
		{name: "max length kept", in: strings.Repeat("a", MaxLen), wantKept: true},
		{name: "empty replaced", in: ""},
		{name: "too long replaced", in: strings.Repeat("a", MaxLen+1)},
		{name: "space replaced", in: "two words"},
		{name: "control replaced", in: "a\x01b"},
		{name: "non-ascii replaced", in: "réq"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Resolve(tt.in)
			if kept := got == tt.in; kept != tt.wantKept {
				t.Errorf("Resolve(%q) = %q, kept = %v, want %v", tt.in, got, kept, tt.wantKept)
			}
			if !valid(got) {
				t.Errorf("Resolve(%q) = %q, which is not itself a valid id", tt.in, got)
			}
		})
	}
	if a, b := Resolve(""), Resolve(""); a == b {
		t.Errorf("two generated ids are equal (%q), want distinct", a)
	}
}
