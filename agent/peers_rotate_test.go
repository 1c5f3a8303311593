package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// TestEndpointRotation: a peer without a fresh handshake moves through its
// allowed hints, one every EndpointRotateAfter, refused hints skipped; a
// fresh handshake keeps it where it is; the same hints relayed again do
// not send it back to the first. Fake clock, recording data plane.
func TestEndpointRotation(t *testing.T) {
	h := newHarness(t)
	h.plane.handshakes = map[certs.WireGuardKey]time.Time{}
	a, b, c := netip.MustParseAddrPort("192.0.2.1:51820"), netip.MustParseAddrPort("198.51.100.2:51820"),
		netip.MustParseAddrPort("203.0.113.3:51820")
	prof := h.pki.NewProfile(t, "peer")
	p := h.advertise(t, h.peer(t, "p", prof), prof, a, netip.MustParseAddrPort("169.254.1.1:51820"), b, c)
	var k certs.WireGuardKey
	endpoint := func() netip.AddrPort {
		wp, ok := h.plane.get(k)
		if !ok {
			t.Fatal("the peer is not configured")
		}
		return wp.Endpoint
	}
	// Half a period changes nothing, a full one moves on.
	h.v.handle(upsert(p))
	k = h.m.peers[h.m.labels["p"]].id.WireGuardKey
	if got := endpoint(); got != a {
		t.Fatalf("first endpoint %s, want %s", got, a)
	}
	h.now = h.now.Add(EndpointRotateAfter / 2)
	h.m.sweep()
	if got := endpoint(); got != a {
		t.Errorf("moved to %s after half the rotation period", got)
	}
	for _, want := range []netip.AddrPort{b, c, a} {
		h.now = h.now.Add(EndpointRotateAfter)
		h.m.sweep()
		if got := endpoint(); got != want {
			t.Errorf("endpoint %s, want %s (the refused link-local hint skipped)", got, want)
		}
	}
	// On b, a handshake completes: the peer stays on b.
	h.now = h.now.Add(EndpointRotateAfter)
	h.m.sweep()
	h.plane.handshakes[k] = h.now
	for range 3 {
		h.now = h.now.Add(EndpointRotateAfter)
		h.m.sweep()
	}
	if got := endpoint(); got != b {
		t.Errorf("endpoint %s after a fresh handshake on %s", got, b)
	}
	// The same hints relayed again leave it on b.
	h.v.handle(upsert(p))
	if got := endpoint(); got != b {
		t.Errorf("the same hints relayed again moved the peer to %s", got)
	}
	// New hints start from their first.
	h.v.handle(upsert(h.advertise(t, p, prof, c, a)))
	if got := endpoint(); got != c {
		t.Errorf("new hints: endpoint %s, want %s", got, c)
	}
}
