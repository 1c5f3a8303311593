package agent

import (
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// TestUnlistedPeerKeptForGrace: the coordinator's word that a peer is gone
// (a snapshot without it, as a restarted coordinator sends to the first
// agent back; or "left") is no signed reason. A verified, valid peer stays
// in the WireGuard device until the grace ends without the coordinator
// listing it again, or until its certificate expires, whichever is first.
func TestUnlistedPeerKeptForGrace(t *testing.T) {
	const grace = 3 * time.Minute
	h := newHarness(t)
	h.m.unlistedGrace = grace
	a, b, c := h.pki.NewProfile(t, "a"), h.pki.NewProfile(t, "b"), h.pki.NewProfile(t, "c")
	pa, pb := h.peer(t, "a", a), h.peer(t, "b", b)
	pc := h.peer(t, "c", c, testca.WithValidity(h.now.Add(-time.Minute), h.now.Add(time.Minute)))
	h.v.handle(&wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{pa, pb, pc}})
	h.wantOnly(t, a.WireGuardKey, b.WireGuardKey, c.WireGuardKey)

	// The coordinator restarted: the first snapshot has none of them; b
	// and c are also said to have left.
	h.v.handle(&wire.Event{Type: wire.EventSnapshot})
	h.v.handle(&wire.Event{Type: wire.EventRemove, Label: "b"})
	h.m.sweep()
	h.wantOnly(t, a.WireGuardKey, b.WireGuardKey, c.WireGuardKey)
	if ps, _, _ := h.m.snapshot(); len(ps) != 3 || ps[0].unlistedAt.IsZero() {
		t.Fatalf("verified peers %+v, want all three, marked unlisted", ps)
	}

	// a comes back within the grace; c's certificate expires meanwhile.
	h.now = h.now.Add(2 * time.Minute)
	h.v.handle(upsert(pa))
	h.m.sweep()
	h.wantOnly(t, a.WireGuardKey, b.WireGuardKey)

	// The grace ends: b, never listed again, goes; a, listed, stays.
	h.now = h.now.Add(grace - 2*time.Minute + time.Second)
	h.m.sweep()
	h.wantOnly(t, a.WireGuardKey)

	// Listed again after the grace: a peer like any other.
	h.v.handle(upsert(pb))
	h.wantOnly(t, a.WireGuardKey, b.WireGuardKey)
}

// TestUnlistedGraceOff: without a grace the coordinator's removal takes
// effect at once (the hostile-coordinator suite runs so).
func TestUnlistedGraceOff(t *testing.T) {
	h := newHarness(t)
	a := h.pki.NewProfile(t, "a")
	h.v.handle(upsert(h.peer(t, "a", a)))
	h.v.handle(&wire.Event{Type: wire.EventRemove, Label: "a"})
	h.wantOnly(t)
}

// TestLabelMovedDuringGrace: a label the coordinator gave to another
// device while its first holder sat in the grace stays with the new
// holder when the first is listed again under a new label, so that the
// new holder can still be removed.
func TestLabelMovedDuringGrace(t *testing.T) {
	const grace = 3 * time.Minute
	h := newHarness(t)
	h.m.unlistedGrace = grace
	a, b := h.pki.NewProfile(t, "a"), h.pki.NewProfile(t, "b")
	h.v.handle(&wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{h.peer(t, "L", a)}})
	h.v.handle(&wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{h.peer(t, "L", b)}}) // a unlisted, b under L
	h.v.handle(upsert(h.peer(t, "L2", a)))                                                   // a listed again, under L2
	h.v.handle(&wire.Event{Type: wire.EventRemove, Label: "L"})                              // b left
	h.now = h.now.Add(grace + time.Second)
	h.m.sweep()
	h.wantOnly(t, a.WireGuardKey)
}
