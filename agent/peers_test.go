package agent

import (
	"bytes"
	"crypto"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

const testTD = certs.TrustDomain("corp.example")

// recordingPlane is a data plane that keeps the configured peers in a map,
// so a test sees exactly what the peer manager asked WireGuard to do.
type recordingPlane struct {
	mu      sync.Mutex
	peers   map[certs.WireGuardKey]wgdev.Peer
	failFor map[certs.WireGuardKey]bool // UpsertPeer refuses these keys
	// handshakes are the peers' last handshakes, as Peers reports them.
	handshakes map[certs.WireGuardKey]time.Time
}

func newRecordingPlane() *recordingPlane {
	return &recordingPlane{peers: map[certs.WireGuardKey]wgdev.Peer{}, failFor: map[certs.WireGuardKey]bool{}}
}

func (r *recordingPlane) UpsertPeer(p wgdev.Peer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failFor[p.PublicKey] {
		// Like wireguard-go's IpcSet, fail after applying part of it.
		r.peers[p.PublicKey] = wgdev.Peer{PublicKey: p.PublicKey, AllowedIPs: p.AllowedIPs}
		return errors.New("device refused the peer")
	}
	r.peers[p.PublicKey] = p
	return nil
}

func (r *recordingPlane) RemovePeer(k certs.WireGuardKey) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.peers, k)
	return nil
}

func (r *recordingPlane) Kick(certs.WireGuardKey) error { return nil }

func (r *recordingPlane) Peers() ([]wgdev.PeerStats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []wgdev.PeerStats
	for k, p := range r.peers {
		out = append(out, wgdev.PeerStats{PublicKey: k, AllowedIPs: p.AllowedIPs, Endpoint: p.Endpoint, LastHandshake: r.handshakes[k]})
	}
	return out, nil
}

func (r *recordingPlane) keys() []certs.WireGuardKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []certs.WireGuardKey
	for k := range r.peers {
		out = append(out, k)
	}
	return out
}

func (r *recordingPlane) get(k certs.WireGuardKey) (wgdev.Peer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.peers[k]
	return p, ok
}

// harness is the pipeline from the verification stage to a recording
// data plane: events in (h.v.handle), device configuration out (h.plane).
type harness struct {
	pki   *testca.CA
	keys  map[certs.DeviceID]crypto.Signer // the peers' device keys
	plane *recordingPlane
	v     *verifier
	m     *peerSet
	self  certs.MachineProfile
	now   time.Time
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{pki: testca.New(t, testTD), plane: newRecordingPlane(), now: time.Now(), keys: map[certs.DeviceID]crypto.Signer{}}
	h.self = h.pki.NewProfile(t, "self")
	b, _ := h.pki.IssueMachine(t, h.self)
	self, err := certs.Verify(b, h.pki.Roots(), nil, h.now)
	if err != nil {
		t.Fatalf("verifying own certificate: %v", err)
	}
	clock, log := func() time.Time { return h.now }, slog.New(slog.DiscardHandler)
	device := newDeviceStage(h.plane, self.WireGuardKey, log)
	h.m = newPeerSet(newPathStage(endpointPolicy{}, device, log, clock), &addrIndex{}, nil, self, 0, log, clock)
	h.v = &verifier{roots: h.pki.Roots(), peers: h.m, logger: log, opts: verifyConfig{now: clock}}
	return h
}

func (h *harness) peer(t *testing.T, label string, p certs.MachineProfile, opts ...testca.Option) wire.Peer {
	t.Helper()
	b, key := h.pki.IssueMachine(t, p, opts...)
	h.keys[p.DeviceID] = key
	return h.advertise(t, wire.Peer{Label: label, Bundle: b.Wire()}, p, netip.MustParseAddrPort("192.0.2.1:51820"))
}

// advertise is w with p's advertisement of eps, signed now.
func (h *harness) advertise(t *testing.T, w wire.Peer, p certs.MachineProfile, eps ...netip.AddrPort) wire.Peer {
	t.Helper()
	return advertise(t, w, h.keys[p.DeviceID], p, h.now, eps...)
}

func upsert(p wire.Peer) *wire.Event { return &wire.Event{Type: wire.EventUpsert, Peer: &p} }

// rejection returns the recorded refusal of label.
func (h *harness) rejection(label string) (Rejection, bool) {
	_, rs, _ := h.m.snapshot()
	for _, r := range rs {
		if r.Label == label {
			return r, true
		}
	}
	return Rejection{}, false
}

func (h *harness) wantOnly(t *testing.T, keys ...certs.WireGuardKey) {
	t.Helper()
	got := h.plane.keys()
	slices.SortFunc(got, func(a, b certs.WireGuardKey) int { return slices.Compare(a[:], b[:]) })
	slices.SortFunc(keys, func(a, b certs.WireGuardKey) int { return slices.Compare(a[:], b[:]) })
	if !slices.Equal(got, keys) {
		t.Fatalf("configured WireGuard peers = %v, want %v", got, keys)
	}
}

func TestPeerConfiguredFromCertificateOnly(t *testing.T) {
	h := newHarness(t)
	p := h.pki.NewProfile(t, "alice")
	h.v.handle(upsert(h.peer(t, "a", p)))
	h.wantOnly(t, p.WireGuardKey)
	got, _ := h.plane.get(p.WireGuardKey)
	var want []netip.Prefix
	for _, a := range p.Addresses {
		want = append(want, netip.PrefixFrom(a, a.BitLen()))
	}
	if !slices.Equal(got.AllowedIPs, want) {
		t.Errorf("AllowedIPs = %v, want the certified host addresses %v", got.AllowedIPs, want)
	}
	if got.Endpoint != netip.MustParseAddrPort("192.0.2.1:51820") {
		t.Errorf("peer = %+v", got)
	}
	// The lower key starts the handshake at once; the other side turns
	// its keepalive on after KeepaliveDelay.
	starts := bytes.Compare(h.self.WireGuardKey[:], p.WireGuardKey[:]) < 0
	if wantKA := map[bool]time.Duration{true: KeepAlive, false: 0}[starts]; got.PersistentKeepalive != wantKA {
		t.Errorf("keepalive right after configuration = %s, want %s (we start: %v)", got.PersistentKeepalive, wantKA, starts)
	}
	deadline := time.Now().Add(KeepaliveDelay + 5*time.Second)
	for {
		got, _ = h.plane.get(p.WireGuardKey)
		if got.PersistentKeepalive == KeepAlive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keepalive never turned on: %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ps, rs, _ := h.m.snapshot()
	if len(ps) != 1 || ps[0].id.DeviceID != p.DeviceID || len(rs) != 0 {
		t.Fatalf("snapshot = %+v, %+v", ps, rs)
	}
}

func TestPeerRefusals(t *testing.T) {
	other := testca.New(t, testTD)
	for _, tc := range []struct {
		name string
		// event builds the attack; good is a peer already configured.
		event func(t *testing.T, h *harness, good certs.MachineProfile) wire.Peer
		want  certs.Reason
	}{
		{"other CA", func(t *testing.T, h *harness, _ certs.MachineProfile) wire.Peer {
			b, _ := other.IssueMachine(t, h.pki.NewProfile(t, "mallory"))
			return wire.Peer{Label: "x", Bundle: b.Wire()}
		}, certs.ReasonUntrusted},
		{"expired", func(t *testing.T, h *harness, _ certs.MachineProfile) wire.Peer {
			return h.peer(t, "x", h.pki.NewProfile(t, "old"), testca.WithValidity(h.now.Add(-48*time.Hour), h.now.Add(-time.Hour)))
		}, certs.ReasonExpired},
		{"self", func(t *testing.T, h *harness, _ certs.MachineProfile) wire.Peer {
			return h.peer(t, "x", h.self)
		}, ReasonSelf},
		{"own address", func(t *testing.T, h *harness, _ certs.MachineProfile) wire.Peer {
			p := h.pki.NewProfile(t, "mallory")
			p.Addresses = h.self.Addresses
			return h.peer(t, "x", p)
		}, ReasonAddressConflict},
		{"address of a peer", func(t *testing.T, h *harness, good certs.MachineProfile) wire.Peer {
			p := h.pki.NewProfile(t, "mallory")
			p.Addresses = good.Addresses[:1]
			return h.peer(t, "x", p)
		}, ReasonAddressConflict},
		{"key of a peer", func(t *testing.T, h *harness, good certs.MachineProfile) wire.Peer {
			p := h.pki.NewProfile(t, "mallory")
			p.WireGuardKey = good.WireGuardKey
			return h.peer(t, "x", p)
		}, ReasonKeyConflict},
		{"older certificate of a peer", func(t *testing.T, h *harness, good certs.MachineProfile) wire.Peer {
			return h.peer(t, "x", good, testca.WithValidity(h.now.Add(-2*time.Hour), h.now.Add(time.Hour)))
		}, ReasonReplayed},
		{"own WireGuard key", func(t *testing.T, h *harness, _ certs.MachineProfile) wire.Peer {
			p := h.pki.NewProfile(t, "mallory")
			p.WireGuardKey = h.self.WireGuardKey
			return h.peer(t, "x", p)
		}, ReasonKeyConflict},
		{"garbage bundle", func(t *testing.T, h *harness, _ certs.MachineProfile) wire.Peer {
			return wire.Peer{Label: "x", Bundle: certs.WireBundle{Machine: []byte("not DER")}}
		}, certs.ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			good := h.pki.NewProfile(t, "good")
			h.v.handle(upsert(h.peer(t, "good", good)))
			h.wantOnly(t, good.WireGuardKey)
			ev := tc.event(t, h, good)
			h.v.handle(upsert(ev))
			h.wantOnly(t, good.WireGuardKey) // nothing added, nothing displaced
			r, ok := h.rejection(ev.Label)
			if !ok {
				t.Fatalf("no rejection recorded for %q", ev.Label)
			}
			if r.Reason != tc.want {
				t.Fatalf("reason = %q (%s), want %q", r.Reason, r.Error, tc.want)
			}
		})
	}
}

func TestRefusedUpdateKeepsPeer(t *testing.T) {
	h := newHarness(t)
	good := h.pki.NewProfile(t, "good")
	h.v.handle(upsert(h.peer(t, "good", good)))
	// The coordinator sends, under the same label, a certificate from
	// another CA for the same device with the attacker's key.
	evil := good
	evil.WireGuardKey = testca.RandomWireGuardKey(t)
	b, _ := testca.New(t, testTD).IssueMachine(t, evil)
	h.v.handle(upsert(wire.Peer{Label: "good", Bundle: b.Wire()}))
	h.wantOnly(t, good.WireGuardKey)
	if r, ok := h.rejection("good"); !ok || r.Reason != certs.ReasonUntrusted {
		t.Fatalf("rejection = %+v, %v", r, ok)
	}
}

func TestKeyRotationReplacesPeer(t *testing.T) {
	h := newHarness(t)
	p := h.pki.NewProfile(t, "rotating")
	h.v.handle(upsert(h.peer(t, "r", p, testca.WithValidity(h.now.Add(-time.Hour), h.now.Add(time.Hour)))))
	oldKey := p.WireGuardKey
	p.WireGuardKey = testca.RandomWireGuardKey(t)
	h.v.handle(upsert(h.peer(t, "r", p, testca.WithValidity(h.now.Add(-time.Minute), h.now.Add(time.Hour)))))
	h.wantOnly(t, p.WireGuardKey)
	// Replaying the old certificate (old key) is refused.
	q := p
	q.WireGuardKey = oldKey
	h.v.handle(upsert(h.peer(t, "r", q, testca.WithValidity(h.now.Add(-time.Hour), h.now.Add(time.Hour)))))
	h.wantOnly(t, p.WireGuardKey)
	if r, _ := h.rejection("r"); r.Reason != ReasonReplayed {
		t.Fatalf("reason = %q, want %q", r.Reason, ReasonReplayed)
	}
}

func TestDataPlaneFailureConfiguresNothing(t *testing.T) {
	h := newHarness(t)
	p := h.pki.NewProfile(t, "broken")
	h.plane.failFor[p.WireGuardKey] = true
	h.v.handle(upsert(h.peer(t, "b", p)))
	h.wantOnly(t)
	if ps, _, _ := h.m.snapshot(); len(ps) != 0 {
		t.Fatalf("peer recorded as verified although the device refused it: %+v", ps)
	}
	if r, _ := h.rejection("b"); r.Reason != ReasonDataPlane {
		t.Fatalf("reason = %q, want %q", r.Reason, ReasonDataPlane)
	}
}

func TestSnapshotAndRemove(t *testing.T) {
	h := newHarness(t)
	a, b, c := h.pki.NewProfile(t, "a"), h.pki.NewProfile(t, "b"), h.pki.NewProfile(t, "c")
	h.v.handle(&wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{h.peer(t, "a", a), h.peer(t, "b", b)}})
	h.wantOnly(t, a.WireGuardKey, b.WireGuardKey)
	// A new snapshot without a drops it.
	h.v.handle(&wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{h.peer(t, "b", b), h.peer(t, "c", c)}})
	h.wantOnly(t, b.WireGuardKey, c.WireGuardKey)
	h.v.handle(&wire.Event{Type: wire.EventRemove, Label: "b"})
	h.wantOnly(t, c.WireGuardKey)
	// Removing an unknown label changes nothing.
	h.v.handle(&wire.Event{Type: wire.EventRemove, Label: "nobody"})
	h.wantOnly(t, c.WireGuardKey)
}

func TestLabelReassignedToAnotherDevice(t *testing.T) {
	h := newHarness(t)
	a, b := h.pki.NewProfile(t, "a"), h.pki.NewProfile(t, "b")
	h.v.handle(upsert(h.peer(t, "L", a)))
	h.v.handle(upsert(h.peer(t, "L", b)))
	h.wantOnly(t, b.WireGuardKey)
	// Removing the label removes b, and a is not resurrected.
	h.v.handle(&wire.Event{Type: wire.EventRemove, Label: "L"})
	h.wantOnly(t)
}

func TestSweepRemovesExpiredPeers(t *testing.T) {
	h := newHarness(t)
	short, long := h.pki.NewProfile(t, "short"), h.pki.NewProfile(t, "long")
	h.v.handle(upsert(h.peer(t, "s", short, testca.WithValidity(h.now.Add(-time.Minute), h.now.Add(time.Minute)))))
	h.v.handle(upsert(h.peer(t, "l", long)))
	h.wantOnly(t, short.WireGuardKey, long.WireGuardKey)
	h.m.sweep()
	h.wantOnly(t, short.WireGuardKey, long.WireGuardKey)
	h.now = h.now.Add(2 * time.Minute)
	h.m.sweep()
	h.wantOnly(t, long.WireGuardKey)
	if r, _ := h.rejection("s"); r.Reason != certs.ReasonExpired {
		t.Fatalf("reason = %q, want %q", r.Reason, certs.ReasonExpired)
	}
}

// A device that half-applies a refused update keeps neither the new key
// nor loses the old configuration.
func TestFailedUpdateRestoresPeer(t *testing.T) {
	h := newHarness(t)
	p := h.pki.NewProfile(t, "rotating")
	h.v.handle(upsert(h.peer(t, "r", p, testca.WithValidity(h.now.Add(-time.Hour), h.now.Add(time.Hour)))))
	oldKey := p.WireGuardKey
	p.WireGuardKey = testca.RandomWireGuardKey(t)
	h.plane.failFor[p.WireGuardKey] = true
	h.v.handle(upsert(h.peer(t, "r", p, testca.WithValidity(h.now.Add(-time.Minute), h.now.Add(time.Hour)))))
	h.wantOnly(t, oldKey)
	if got, _ := h.plane.get(oldKey); len(got.AllowedIPs) != len(p.Addresses) {
		t.Fatalf("old peer lost its addresses: %+v", got)
	}
}

func TestUnusableEndpointsAreSkipped(t *testing.T) {
	h := newHarness(t)
	p := h.pki.NewProfile(t, "a")
	// Signed candidates the endpoint policy refuses (loopback for an agent
	// not on loopback, link-local); those no one can be reached at (port
	// 0, unspecified, multicast) cannot even be signed (package endpoint).
	ev := h.advertise(t, h.peer(t, "a", p), p, netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("[fe80::1]:51820"),
		netip.MustParseAddrPort("169.254.7.7:51820"), netip.MustParseAddrPort("192.0.2.8:51820"))
	h.v.handle(upsert(ev))
	got, ok := h.plane.get(p.WireGuardKey)
	if !ok || got.Endpoint != netip.MustParseAddrPort("192.0.2.8:51820") {
		t.Fatalf("peer %+v, want the first usable endpoint", got)
	}
}

func TestSweepRemovesUntrackedDevicePeers(t *testing.T) {
	h := newHarness(t)
	good := h.pki.NewProfile(t, "good")
	h.v.handle(upsert(h.peer(t, "good", good)))
	stray := testca.RandomWireGuardKey(t)
	if err := h.plane.UpsertPeer(wgdev.Peer{PublicKey: stray}); err != nil {
		t.Fatal(err)
	}
	h.m.sweep()
	h.wantOnly(t, good.WireGuardKey)
}
