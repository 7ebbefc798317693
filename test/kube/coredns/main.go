// Command coredns is CoreDNS with only the plugins the harness's Corefile
// uses: cluster DNS from the API server, health and readiness endpoints, and
// nothing that would forward a query off this machine.
package main

import (
	"github.com/coredns/coredns/coremain"
	// Each plugin registers itself; CoreDNS runs only the registered ones
	// that the Corefile names, in the order of dnsserver.Directives.
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
