package netcheck

import (
	"context"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

// TestNetcheckBehindNATs runs netcheck on hosts behind the lab's nft NAT
// routers against the real relay's two STUN ports on a public host:
// behind an endpoint-independent NAT it sees one public address (the
// router's) for both ports; behind a symmetric NAT (random port per flow)
// it sees two and says "endpoint-dependent"; behind a router that drops
// UDP it says UDP does not work.
func TestNetcheckBehindNATs(t *testing.T) {
	n := netns.NewTest(t, netns.Options{})
	netns.RequireCommands(t, "nft")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub, err := n.AddHost(ctx, "stun")
	if err != nil {
		t.Fatal(err)
	}
	var stun []string
	if err := pub.Do(func() error {
		_, s := startRelay(t, pub.Addr.String(), nil)
		stun = []string{s.UDP, s.UDPAlt}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		opts    netns.RouterOptions
		udp     bool
		mapping Mapping
	}{
		{"eim", netns.RouterOptions{Mapping: netns.EndpointIndependent}, true, MappingIndependent},
		{"sym", netns.RouterOptions{Mapping: netns.Symmetric}, true, MappingDependent},
		{"noudp", netns.RouterOptions{BlockUDP: true}, false, MappingUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := n.AddRouter(ctx, "r"+tc.name, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			h, err := rt.AddHost(ctx, "h"+tc.name)
			if err != nil {
				t.Fatal(err)
			}
			var rep *Report
			if err := h.Do(func() (err error) {
				rep, err = Run(ctx, Config{STUN: stun, Timeout: 2 * time.Second})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if rep.UDP != tc.udp || rep.Mapping != tc.mapping {
				t.Fatalf("behind %s: report %+v, want UDP %v and mapping %s", tc.name, rep, tc.udp, tc.mapping)
			}
			for _, a := range rep.PublicAddrs {
				if a.Addr() != rt.Addr || !rep.NAT {
					t.Fatalf("public address %s (NAT %v), want the router's %s", a, rep.NAT, rt.Addr)
				}
			}
		})
	}
}
