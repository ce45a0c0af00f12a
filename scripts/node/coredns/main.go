// CoreDNS with only the plugins the node's DNS uses (the full build pulls in cloud SDKs and takes twice as
// long): cluster names from the API (kubernetes), an answer for everything else without forwarding
// anywhere (template: nothing leaves this machine), cache, health and readiness endpoints, logs of errors.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
)

// The order requests pass through the plugins, as in CoreDNS's own plugin.cfg.
func init() {
	dnsserver.Directives = []string{
		"health", "ready", "errors", "log", "cache", "loadbalance", "kubernetes", "template",
	}
}

func main() { coremain.Run() }
