package node

import "testing"

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/kc-1/node/containerd`: "/tmp/kc-1/node/containerd",
		`/tmp/with\040space`:        "/tmp/with space",
		`/tmp/tab\011and\134slash`:  "/tmp/tab\tand\\slash",
		`/tmp/trailing\04`:          `/tmp/trailing\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
