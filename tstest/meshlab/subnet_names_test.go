package meshlab_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// siteName is the LAN host's name in the site's own DNS.
const siteName = "printer.site.example"

// TestSubnetRouterByName: the site's resolver runs on the LAN (on the
// host that runs no agent) and is the client's upstream (--dns-upstream).
// Before the route is approved the client cannot resolve the LAN host's
// name; once it is, the client's resolver forwards the query through the
// tunnel and the router (the site's resolver sees it from the router's LAN
// address: masqueraded), answers the name, and the client reaches the host
// by it.
func TestSubnetRouterByName(t *testing.T) {
	t.Parallel()
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	s := newSite(t, lab)
	siteDNS := netip.AddrPortFrom(s.host.Addr, 53)
	queries := make(chan netip.Addr, 64)
	startResolver(t, s.host, siteDNS.String(), map[string]netip.Addr{siteName + ".": s.host.Addr}, queries)
	router, routerLAN := s.addRouter(t, "router")
	client := s.addClient(t, "client", "--dns-upstream", siteDNS.String())
	meshlab.WaitMesh(t, time.Minute, router, client)
	s.allowSite(t, router, client)
	ctx := t.Context()

	if resp, err := lookup(ctx, client, "udp", siteName, dns.TypeA); err == nil && len(resp.Answer) > 0 {
		t.Fatalf("the client resolved %s before the route was approved: %v", siteName, records(resp))
	}
	if src := drain(queries); len(src) != 0 {
		t.Fatalf("the site's resolver was reached from %v before the route was approved", src)
	}

	s.approve(t, router, siteLAN)
	var ip netip.Addr
	meshlab.Eventually(t, approvalDeadline, "the client to resolve the LAN host's name through the router", func() error {
		resp, err := lookup(ctx, client, "udp", siteName, dns.TypeA)
		if err != nil {
			return err
		}
		if len(resp.Answer) != 1 {
			return fmt.Errorf("%s: %v", siteName, records(resp))
		}
		a, ok := resp.Answer[0].(*dns.A)
		if !ok {
			return fmt.Errorf("%s: %v", siteName, records(resp))
		}
		ip, _ = netip.AddrFromSlice(a.A.To4())
		return nil
	})
	if ip != s.host.Addr {
		t.Fatalf("%s resolved to %v, want the LAN host's %v", siteName, ip, s.host.Addr)
	}
	if err := meshlab.Reach(ctx, client, netip.AddrPortFrom(ip, siteEchoPort), e2e.FirstContactTimeout); err != nil {
		t.Fatalf("the client reaching %s (%v) by name through the router: %v", siteName, ip, err)
	}
	if src := drain(queries); len(src) == 0 || slices.ContainsFunc(src, func(a netip.Addr) bool { return a != routerLAN }) {
		t.Fatalf("the site's resolver saw queries from %v, want only the router's LAN address %s", src, routerLAN)
	}
	if src := s.sources(); len(src) == 0 || slices.ContainsFunc(src, func(a netip.Addr) bool { return a != routerLAN }) {
		t.Fatalf("the LAN host saw connections from %v, want only the router's LAN address %s", src, routerLAN)
	}
}
