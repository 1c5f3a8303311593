package hostile_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/ca"
)

// TestCoordinatorCannotRouteUncertifiedPrefix: the coordinator relays a
// peer as routing prefixes its certificate does not carry (a LAN, the
// whole internet). The victim, which accepts routes, refuses each of them
// and counts it (route-uncertified): no WireGuard peer of the victim holds
// them, nothing is installed, and the peer stays on its certified
// addresses. Once the CA certifies the peer for one of the prefixes, the
// same relay still installs nothing while the policy (the starter: mesh
// nodes only) lets the victim reach nothing inside it (route-not-allowed);
// positive control: the CA's policy allowing it installs exactly that one,
// without a new relay.
func TestCoordinatorCannotRouteUncertifiedPrefix(t *testing.T) {
	t.Parallel()
	lan := netip.MustParsePrefix("10.66.0.0/24")
	f := newFixtureWith(t, func(c *agent.Config) { c.AcceptRoutes = true },
		func(c *agent.Config) { c.AdvertiseRoutes = []netip.Prefix{lan} })
	v, p := f.Victim, f.Peer
	claims := []string{lan.String(), "10.67.0.0/16", "0.0.0.0/0", "::/0"}
	relay := func() {
		w := p.AsPeer()
		b, _ := p.Agent.Bundle()
		w.Bundle, w.Routes = b.Wire(), claims
		send(t, v.Conn, upsert(w))
	}
	routed := func() []netip.Prefix {
		wp, ok := devicePeer(t, v, p.Self.WireGuardKey)
		if !ok {
			t.Fatal("the peer is not configured on the victim")
		}
		return slices.DeleteFunc(slices.Clone(wp.AllowedIPs), func(a netip.Prefix) bool { return a.Bits() == a.Addr().BitLen() })
	}

	// The peer is certified for no route (not approved yet).
	relay()
	st := f.sync(t)
	if got := routed(); len(got) != 0 {
		t.Fatalf("the victim routes %v through a peer certified for none", got)
	}
	if len(st.Routes.Installed) != 0 {
		t.Fatalf("routes installed: %+v", st.Routes.Installed)
	}
	if n := st.RejectedCounts[agent.ReasonRouteUncertified]; n != uint64(len(claims)) {
		t.Fatalf("route-uncertified refusals %d, want %d (%v)", n, len(claims), st.Rejected)
	}
	if _, ok := peerOf(st, p.Self.DeviceID); !ok {
		t.Fatal("the peer itself was refused for the coordinator's claims")
	}

	// Positive control: approved and renewed, the peer's certificate
	// carries lan, and the same claims install lan and nothing else.
	if _, err := f.CA.ApproveAsks(t.Context(), p.Self.DeviceID, ca.Approval{Routes: []string{lan.String()}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Agent.RenewNow(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, id := p.Agent.Bundle(); !id.HasRoute(lan) {
		t.Fatalf("the renewed certificate carries routes %v, want %s", id.Routes, lan)
	}
	relay()
	st = f.sync(t)
	if got := routed(); len(got) != 0 || len(st.Routes.Installed) != 0 {
		t.Fatalf("the victim routes %v (installed %+v) although the policy lets it reach nothing there", got, st.Routes.Installed)
	}
	if n := st.RejectedCounts[agent.ReasonRouteNotAllowed]; n != 1 {
		t.Fatalf("route-not-allowed refusals %d, want 1 (%v)", n, st.Rejected)
	}
	f.publish(t, `{"rules": [{"from": ["*"], "to": ["*", "`+lan.String()+`"], "ports": ["*"]}]}`)
	st = f.sync(t)
	if got := routed(); !slices.Equal(got, []netip.Prefix{lan}) {
		t.Fatalf("the victim routes %v through the certified peer, want only %s", got, lan)
	}
	if len(st.Routes.Installed) != 1 || st.Routes.Installed[0].Via != p.Self.DeviceID {
		t.Fatalf("routes installed: %+v", st.Routes.Installed)
	}
	if n := st.RejectedCounts[agent.ReasonRouteUncertified]; n != uint64(2*len(claims)-1) {
		t.Fatalf("route-uncertified refusals %d, want %d", n, 2*len(claims)-1)
	}
}
