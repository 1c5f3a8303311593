package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// splitDNSTimeout bounds each call to the system resolver.
const splitDNSTimeout = 5 * time.Second

// splitDNS is a system resolver's per-link configuration: on Linux,
// systemd-resolved over D-Bus (splitdns_resolved.go).
type splitDNS interface {
	// set makes server the DNS server of link ifindex for the routing
	// domain ~domain only (never the default route), replacing whatever
	// the link had (a stale setting of an agent that crashed too).
	set(ctx context.Context, ifindex int, server netip.Addr, domain string) error
	// revert drops everything set on the link.
	revert(ctx context.Context, ifindex int) error
	close() error
}

// setupSplitDNS has the system resolver send the trust domain, and only
// it, to the agent's resolver at server, on the tunnel interface; undo
// reverts it (on stop). Without systemd-resolved nothing is changed (the
// agent never rewrites /etc/resolv.conf): the log and status say what to
// configure instead.
func (a *Agent) setupSplitDNS(ctx context.Context, server netip.Addr, td certs.TrustDomain) (undo func()) {
	log := a.cfg.Logger.With("component", "dns")
	iface := a.dev.InterfaceName()
	if a.cfg.DNS.NoSplitDNS {
		a.names.setSplit("off (--split-dns=false): " + splitDNSHint(server, td, iface))
		return func() {}
	}
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		a.names.setSplit(fmt.Sprintf("not set up (tunnel interface %s: %v): %s", iface, err, splitDNSHint(server, td, iface)))
		return func() {}
	}
	cctx, cancel := context.WithTimeout(ctx, splitDNSTimeout)
	defer cancel()
	sd, err := dialResolved(cctx, a.cfg.DNS.ResolvedBus)
	if err == nil {
		if err = sd.set(cctx, ifc.Index, server, string(td)); err != nil {
			_ = sd.close()
		}
	}
	if err != nil {
		hint := splitDNSHint(server, td, iface)
		log.Warn("dns: split DNS not set up: names in the trust domain resolve only through the agent's resolver directly; "+hint, "err", err)
		a.names.setSplit(fmt.Sprintf("not set up (%v): %s", err, hint))
		return func() {}
	}
	log.Info("dns: split DNS set up with systemd-resolved", "interface", iface, "server", server, "domain", "~"+string(td))
	a.names.setSplit(fmt.Sprintf("systemd-resolved: %s asks %s for ~%s", iface, server, td))
	return func() {
		rctx, cancel := context.WithTimeout(context.Background(), splitDNSTimeout)
		defer cancel()
		if err := errors.Join(sd.revert(rctx, ifc.Index), sd.close()); err != nil {
			log.Warn("dns: reverting split DNS", "interface", iface, "err", err)
			return
		}
		log.Info("dns: split DNS reverted", "interface", iface)
	}
}

// splitDNSHint is what to configure by hand where the agent cannot.
func splitDNSHint(server netip.Addr, td certs.TrustDomain, iface string) string {
	return fmt.Sprintf("to resolve %s, point the system resolver at %s for that domain (systemd-resolved: resolvectl dns %s %s; resolvectl domain %s '~%s'; dnsmasq: server=/%s/%s), or query %s directly",
		td, server, iface, server, iface, td, td, server, server)
}
