package path

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// TestRoamedPeerForgetsLeftAddress: a peer learned (peer-reflexive) at the
// address it also advertised roams and advertises only its new one. The
// old address is forgotten with the advertisement, so its path there is
// no longer a target (kept as the current path until it stopped answering,
// TestRoamingReadvertises missed the new address under load); a learned
// NAT mapping of an address still advertised stays. Red before forgetLeft.
func TestRoamedPeerForgetsLeftAddress(t *testing.T) {
	old := netip.MustParseAddrPort("10.213.82.2:51820")
	moved := netip.MustParseAddrPort("10.213.82.4:51820")
	natted := netip.MustParseAddrPort("198.51.100.7:40000")
	mapping := netip.MustParseAddrPort("198.51.100.7:40001")
	a, b := newTestNode(t, 1), newTestNode(t, 2)
	m := startManager(t, a, Config{})
	if err := m.SetPeer(b.pub(), []Candidate{{Local, old}, {Reflexive, natted}}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	p := m.peers[b.pub()]
	now := time.Now()
	p.learned[old] = now     // pinged from there before its advertisement arrived
	p.learned[mapping] = now // another mapping of its NAT
	m.mu.Unlock()
	if err := m.SetPeer(b.pub(), []Candidate{{Local, moved}, {Reflexive, natted}}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	got := slices.Collect(p.targets())
	if slices.Contains(got, old) {
		t.Fatalf("targets %v still hold %v, which the peer no longer advertises", got, old)
	}
	for _, want := range []netip.AddrPort{moved, natted, mapping} {
		if !slices.Contains(got, want) {
			t.Fatalf("targets %v lack %v", got, want)
		}
	}
}

// TestRelayHostsCountAsRelayed: an address the peer pinged from (learned,
// not advertised: its new relay allocation before its advertisement names
// it) on a relay host the agent knows (Config.RelayHosts, the CA's relays)
// is a relayed route, which loses to any direct one; the peer's own
// address stays direct.
func TestRelayHostsCountAsRelayed(t *testing.T) {
	relayHost := netip.MustParseAddr("198.51.100.7")
	m, err := New(Config{Bind: NewBind(nil), PrivateKey: genKey(t), RelayHosts: []netip.Addr{relayHost},
		SetEndpoint: func(certs.WireGuardKey, string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	peerKey := genKey(t).Public()
	own := netip.MustParseAddrPort("203.0.113.5:51820")
	if err := m.SetPeer(peerKey, []Candidate{{Kind: Local, Addr: own}}); err != nil {
		t.Fatal(err)
	}
	onRelay := netip.AddrPortFrom(relayHost, 40000)
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.peers[peerKey]
	p.learned[onRelay] = time.Now()
	m.syncRoutes(p)
	if rs := p.routes[Route{Addr: onRelay}]; rs == nil || !rs.relayed {
		t.Fatalf("the route to %v on a known relay host: %+v, want relayed", onRelay, rs)
	}
	if rs := p.routes[Route{Addr: own}]; rs == nil || rs.relayed {
		t.Fatalf("the route to the peer's own address %v: %+v, want direct", own, rs)
	}
}
