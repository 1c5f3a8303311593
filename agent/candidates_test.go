package agent

import (
	"crypto"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// advertisingPeer is a certified device that signs advertisements with its
// own advertiser, as a real agent does, and the identity a receiver
// verifies from its certificate.
type advertisingPeer struct {
	id  certs.Identity
	adv *advertiser
}

func newAdvertisingPeer(t *testing.T, pki *testca.CA, host string, now func() time.Time) advertisingPeer {
	t.Helper()
	b, key := pki.IssueMachine(t, pki.NewProfile(t, host))
	id, err := certs.Verify(b, pki.Roots(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAdvertiser(t.TempDir(), key, now)
	if err != nil {
		t.Fatal(err)
	}
	return advertisingPeer{id: id, adv: a}
}

func (p advertisingPeer) sign(t *testing.T, eps ...string) []byte {
	t.Helper()
	var aps []netip.AddrPort
	for _, e := range eps {
		aps = append(aps, netip.MustParseAddrPort(e))
	}
	b, _, err := p.adv.update(p.id.DeviceID, p.id.WireGuardKey, localCandidates(aps))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantEndpoints(t *testing.T, got []netip.AddrPort, want ...string) {
	t.Helper()
	var w []netip.AddrPort
	for _, e := range want {
		w = append(w, netip.MustParseAddrPort(e))
	}
	if !slices.Equal(got, w) {
		t.Fatalf("endpoints %v, want %v", got, w)
	}
}

// TestCandidateBook: only a verified advertisement gives a peer
// endpoints; a refused one (unsigned, another device's, a replay of an
// older one) leaves the last accepted in place; a stale one is dropped;
// a new certificate (WireGuard key) needs a new advertisement.
func TestCandidateBook(t *testing.T) {
	pki := testca.New(t, testTD)
	clk := testclock.At(time.Now())
	a := newAdvertisingPeer(t, pki, "alice", clk.Now)
	b := newAdvertisingPeer(t, pki, "bob", clk.Now)
	book := newCandidateBook()

	first := a.sign(t, "192.0.2.1:51820")
	eps, err := book.accept(a.id, first, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	wantEndpoints(t, eps, "192.0.2.1:51820")
	clk.Advance(time.Second)
	second := a.sign(t, "192.0.2.2:51820", "[2001:db8::2]:51820")

	for name, c := range map[string]struct {
		raw    []byte
		reason endpoint.Reason
	}{
		"unsigned":         {nil, endpoint.ReasonUnsigned},
		"garbage":          {[]byte("\x01garbage"), endpoint.ReasonMalformed},
		"another device's": {b.sign(t, "203.0.113.66:51820"), endpoint.ReasonBadSignature},
	} {
		eps, err := book.accept(a.id, c.raw, clk.Now())
		if endpoint.ReasonOf(err) != c.reason {
			t.Fatalf("%s: refused for %v, want %s", name, err, c.reason)
		}
		wantEndpoints(t, eps, "192.0.2.1:51820") // the last accepted stands
	}
	eps, err = book.accept(a.id, second, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	wantEndpoints(t, eps, "192.0.2.2:51820", "[2001:db8::2]:51820")
	if eps, err = book.accept(a.id, second, clk.Now()); err != nil { // relayed again: not a replay
		t.Fatalf("the same advertisement relayed again: %v", err)
	}
	wantEndpoints(t, eps, "192.0.2.2:51820", "[2001:db8::2]:51820")
	eps, err = book.accept(a.id, first, clk.Now())
	if endpoint.ReasonOf(err) != endpoint.ReasonReplayed {
		t.Fatalf("the older advertisement relayed again: %v, want replayed", err)
	}
	wantEndpoints(t, eps, "192.0.2.2:51820", "[2001:db8::2]:51820")

	// Past the freshness bound, what is held is used no more.
	clk.Advance(endpoint.MaxAge + time.Second)
	eps, err = book.accept(a.id, second, clk.Now())
	if endpoint.ReasonOf(err) != endpoint.ReasonStale || eps != nil {
		t.Fatalf("a stale advertisement relayed again: %v, %v; want no endpoints, stale", eps, err)
	}
	if eps, _ := book.accept(a.id, nil, clk.Now()); eps != nil {
		t.Fatalf("stale candidates used after an unsigned relay: %v", eps)
	}

	// A renewed certificate with a new WireGuard key: the old key's
	// advertisement is refused and nothing is held for the new one.
	fresh := a.sign(t, "192.0.2.3:51820")
	renewed := a.id
	renewed.WireGuardKey = testca.RandomWireGuardKey(t)
	if eps, err := book.accept(renewed, fresh, clk.Now()); endpoint.ReasonOf(err) != endpoint.ReasonWrongKey || eps != nil {
		t.Fatalf("the old key's advertisement for the new certificate: %v, %v", eps, err)
	}
}

// TestAdvertiserSequence: the sequence number grows with every signing,
// survives a restart (the state directory), and an unchanged list is
// re-signed only at the refresh interval.
func TestAdvertiserSequence(t *testing.T) {
	pki := testca.New(t, testTD)
	b, key := pki.IssueMachine(t, pki.NewProfile(t, "laptop"))
	id, err := certs.Verify(b, pki.Roots(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	clk := testclock.At(time.Now())
	cands := localCandidates([]netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:51820")})
	seqOf := func(raw []byte) uint64 {
		t.Helper()
		adv, err := endpoint.Verify(raw, id, 0, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return adv.Seq
	}

	a, err := newAdvertiser(dir, key, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	s1, isNew, err := a.update(id.DeviceID, id.WireGuardKey, cands)
	if err != nil || !isNew {
		t.Fatalf("first signing: new %v, %v", isNew, err)
	}
	clk.Advance(endpoint.RefreshInterval - time.Second)
	if s, isNew, _ := a.update(id.DeviceID, id.WireGuardKey, cands); isNew || string(s) != string(s1) {
		t.Fatal("re-signed an unchanged list before the refresh interval")
	}
	clk.Advance(time.Second)
	s2, isNew, _ := a.update(id.DeviceID, id.WireGuardKey, cands)
	if !isNew || seqOf(s2) <= seqOf(s1) {
		t.Fatalf("at the refresh interval: new %v, sequence %d after %d", isNew, seqOf(s2), seqOf(s1))
	}

	// A restart with the clock set back an hour still goes up.
	seq2 := seqOf(s2)
	clk.Advance(-time.Hour)
	a, err = newAdvertiser(dir, key, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	s3, _, err := a.update(id.DeviceID, id.WireGuardKey, cands[:0])
	if err != nil || seqOf(s3) != seq2+1 {
		t.Fatalf("after a restart: sequence %d after %d (%v)", seqOf(s3), seq2, err)
	}

	// A damaged file is refused, saying what it is.
	if err := os.WriteFile(filepath.Join(dir, endpointSeqFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newAdvertiser(dir, key, clk.Now); err == nil {
		t.Fatal("a corrupt sequence file accepted")
	}
}

func TestLocalCandidates(t *testing.T) {
	var eps []netip.AddrPort
	eps = append(eps, netip.MustParseAddrPort("0.0.0.0:51820"), netip.MustParseAddrPort("[::ffff:192.0.2.1]:51820"),
		netip.MustParseAddrPort("192.0.2.1:51820"))
	for i := range endpoint.MaxCandidates + 2 {
		eps = append(eps, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 51820))
	}
	got := localCandidates(eps)
	if len(got) != endpoint.MaxCandidates || got[0].Addr != netip.MustParseAddrPort("192.0.2.1:51820") {
		t.Fatalf("local candidates %v", got)
	}
}

// testSeq numbers the advertisements tests sign, each above the last.
var testSeq atomic.Uint64

// advertise relays w with an advertisement of eps as local candidates,
// signed by key, the device key of the certified profile p, at now: what
// a real agent publishes.
func advertise(t testing.TB, w wire.Peer, key crypto.Signer, p certs.MachineProfile, now time.Time, eps ...netip.AddrPort) wire.Peer {
	t.Helper()
	adv, err := endpoint.Sign(key, endpoint.Advertisement{DeviceID: p.DeviceID, WireGuardKey: p.WireGuardKey,
		Seq: testSeq.Add(1), IssuedAt: now, Candidates: localCandidates(eps)})
	if err != nil {
		t.Fatal(err)
	}
	w.Endpoints, w.Advertisement = eps, adv
	return w
}

// TestRawEndpointsNeverUsed: a peer relayed with endpoints and no
// advertisement, or an advertisement another device signed, is admitted
// (its certificate is good) without an endpoint; the refusal is counted
// under CandidateReason and the peer is not listed as refused.
func TestRawEndpointsNeverUsed(t *testing.T) {
	h := newHarness(t)
	p, other := h.pki.NewProfile(t, "aimed"), h.pki.NewProfile(t, "other")
	h.peer(t, "other", other)
	aimed := netip.MustParseAddrPort("203.0.113.66:51820")
	unsigned := h.peer(t, "aimed", p)
	unsigned.Endpoints, unsigned.Advertisement = []netip.AddrPort{aimed}, nil
	h.v.handle(upsert(unsigned))
	p2 := h.pki.NewProfile(t, "aimed2")
	h.v.handle(upsert(advertise(t, h.peer(t, "aimed2", p2), h.keys[other.DeviceID], other, h.now, aimed)))
	for _, k := range []certs.WireGuardKey{p.WireGuardKey, p2.WireGuardKey} {
		got, ok := h.plane.get(k)
		if !ok || got.Endpoint.IsValid() {
			t.Fatalf("peer %+v (configured %v), want it configured without an endpoint", got, ok)
		}
	}
	for _, ps := range h.plane.peers {
		if ps.Endpoint == aimed {
			t.Fatalf("a peer was configured at the coordinator's address %s", aimed)
		}
	}
	_, rs, counts := h.m.snapshot()
	if counts[CandidateReason(endpoint.ReasonUnsigned)] != 1 || counts[CandidateReason(endpoint.ReasonBadSignature)] != 1 {
		t.Fatalf("refusals counted %v, want one unsigned and one bad-signature", counts)
	}
	for _, r := range rs {
		if r.Label == "aimed" || r.Label == "aimed2" {
			t.Fatalf("the peer is listed as refused: %+v", r)
		}
	}
}
