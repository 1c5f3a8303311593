package path

import (
	"net/netip"
	"slices"
	"testing"
	"time"
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
