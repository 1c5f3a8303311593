package agent

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// tapStage is a stage between the peer set and the path stage, as a path
// layer would sit there: it records what passes and hands it on.
type tapStage struct {
	next peerSink
	seen []string
}

func (s *tapStage) admit(p, prev *verifiedPeer) (bool, error) {
	s.seen = append(s.seen, fmt.Sprintf("admit %s (prev %v)", p.id.Hostname, prev != nil))
	return s.next.admit(p, prev)
}

func (s *tapStage) evict(p *verifiedPeer, why string) {
	s.seen = append(s.seen, fmt.Sprintf("evict %s: %s", p.id.Hostname, why))
	s.next.evict(p, why)
}

func (s *tapStage) sweep(peers []*verifiedPeer) { s.next.sweep(peers) }

// stagedHarness is the harness's pipeline with a CRL holder beside the
// verifier and tap between the peer set and the path stage.
func stagedHarness(t *testing.T) (*harness, *tapStage) {
	t.Helper()
	h := newHarness(t)
	clock, log := func() time.Time { return h.now }, slog.New(slog.DiscardHandler)
	b, _ := h.pki.IssueMachine(t, h.self)
	self, err := certs.Verify(b, h.pki.Roots(), nil, h.now)
	if err != nil {
		t.Fatal(err)
	}
	tap := &tapStage{next: newPathStage(endpointPolicy{}, newDeviceStage(h.plane, self.WireGuardKey, log), log, clock)}
	h.m = newPeerSet(tap, &addrIndex{}, nil, self, 0, log, clock)
	var ident identity
	ident.set(b, &keys{})
	crl := newCRLHolder(h.pki.Roots(), &ident, t.TempDir(), time.Minute, DegradedRefuseNew, h.m, log, clock)
	h.v = &verifier{roots: h.pki.Roots(), crl: crl, peers: h.m, logger: log,
		opts: verifyConfig{now: clock, crlStale: DegradedRefuseNew}}
	return h, tap
}

// TestForwardPass: coordinator events in, device configuration out,
// through every stage: a CRL document goes to its holder and evicts the
// peer it revokes (through the stage after the peer set, to the device),
// a revoked peer relayed again is refused by the verification stage, and
// once the CRL is stale a new peer is refused while those held stay.
func TestForwardPass(t *testing.T) {
	h, tap := stagedHarness(t)
	alice, bob, carol := h.pki.NewProfile(t, "alice"), h.pki.NewProfile(t, "bob"), h.pki.NewProfile(t, "carol")
	pa, pb := h.peer(t, "a", alice), h.peer(t, "b", bob)
	h.v.handle(&wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{pa, pb}})
	h.wantOnly(t, alice.WireGuardKey, bob.WireGuardKey)
	if id, ok := h.m.index.lookup(bob.Addresses[0]); !ok || id.DeviceID != bob.DeviceID {
		t.Fatalf("the filter's index does not map bob's address to bob: %v, %v", id, ok)
	}

	crl := h.pki.IssueCRL(t, 2, h.now.Add(-time.Minute), h.now.Add(time.Hour), testca.Revoked(machineOf(t, pb), 1))
	h.v.handle(doc(wire.DocCRL, crl))
	h.wantOnly(t, alice.WireGuardKey)
	if _, ok := h.m.index.lookup(bob.Addresses[0]); ok {
		t.Fatal("the revoked peer is still in the filter's index")
	}
	h.v.handle(upsert(pb))
	h.wantOnly(t, alice.WireGuardKey)
	if r, _ := h.rejection("b"); r.Reason != certs.ReasonRevoked {
		t.Fatalf("revoked peer relayed again: refused as %q", r.Reason)
	}
	if st := h.v.crl.status(); st.Number != "2" || st.Stale {
		t.Fatalf("CRL status %+v", st)
	}

	h.now = h.now.Add(2 * time.Hour) // past next update and grace
	h.v.handle(&wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{pa, h.peer(t, "c", carol)}})
	h.wantOnly(t, alice.WireGuardKey)
	if r, _ := h.rejection("c"); r.Reason != ReasonCRLStale {
		t.Fatalf("new peer with a stale CRL: refused as %q", r.Reason)
	}

	want := []string{"admit alice (prev false)", "admit bob (prev false)", "evict bob: revoked", "admit alice (prev true)"}
	if !slices.Equal(tap.seen, want) {
		t.Fatalf("the stage after the peer set saw %q, want %q", tap.seen, want)
	}
}

// TestForwardPassDocumentKinds: a document of a kind the agent has no
// holder for, or does not know, changes nothing.
func TestForwardPassDocumentKinds(t *testing.T) {
	h := newHarness(t)
	p := h.pki.NewProfile(t, "alice")
	h.v.handle(upsert(h.peer(t, "a", p)))
	for _, k := range []wire.DocKind{wire.DocPolicy, wire.DocCRL, wire.DocCheckpoint, "future-kind"} {
		h.v.handle(doc(k, []byte("x")))
	}
	h.wantOnly(t, p.WireGuardKey)
}
