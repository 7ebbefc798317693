//go:build failover

package failover

import (
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

var chainSeq atomic.Int64

// partition drops every packet between the addresses of side a and those of
// side b, both ways, in an iptables chain of its own that heal (or the end
// of the test) removes. Dropping, not rejecting, is what a real partition
// does: connections hang until a timeout rather than fail at once.
type partition struct {
	t     *testing.T
	chain string
	up    bool
}

func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func cut(t *testing.T, a, b []string) *partition {
	t.Helper()
	p := &partition{t: t, chain: fmt.Sprintf("PAYFAIL-%d-%d", pidSelf, chainSeq.Add(1))}
	if err := iptables("-N", p.chain); err != nil {
		t.Fatal(err)
	}
	p.up = true
	t.Cleanup(p.heal)
	for _, x := range a {
		for _, y := range b {
			for _, pair := range [][2]string{{x, y}, {y, x}} {
				if err := iptables("-A", p.chain, "-s", pair[0], "-d", pair[1], "-j", "DROP"); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := iptables("-I", "INPUT", "-j", p.chain); err != nil {
		t.Fatal(err)
	}
	return p
}

// heal removes the chain; it may be called more than once.
func (p *partition) heal() {
	if !p.up {
		return
	}
	p.up = false
	_ = iptables("-D", "INPUT", "-j", p.chain)
	_ = iptables("-F", p.chain)
	if err := iptables("-X", p.chain); err != nil {
		p.t.Errorf("heal partition: %v", err)
	}
}

func ips(nodes ...*node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ip)
	}
	return out
}
