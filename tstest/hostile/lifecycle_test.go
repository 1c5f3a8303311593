package hostile_test

// Attacks across time: an old certificate replayed after the device
// rotated its key, and a peer whose certificate expires while the
// coordinator keeps quiet about it.

import (
	"crypto"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// mustReach checks that a gets through to the victim's probe.
func mustReach(t *testing.T, f *fixture, a *attacker) {
	t.Helper()
	a.WaitHandshake(t, f)
	mark := f.Victim.Probe.Mark()
	at := a.Try(f, reachWithin)
	at.Wait()
	if !at.Acked() {
		t.Fatalf("%s did not get through: %v", a.Name, at)
	}
	if got := at.sentBy(f.Victim.Probe.Since(mark), nil); !slices.ContainsFunc(got, func(d delivery) bool { return d.Proto == "tcp" }) {
		t.Fatalf("the probe did not record %s's connection", a.Name)
	}
}

// mustNotReach checks that nothing a sends reaches the victim's probe
// within attackWindow.
func mustNotReach(t *testing.T, f *fixture, a *attacker) {
	t.Helper()
	mark := f.Victim.Probe.Mark()
	at := a.Try(f, attackWindow)
	at.Wait()
	if leaks := at.sentBy(f.Victim.Probe.Since(mark), nil); len(leaks) > 0 || at.Acked() {
		t.Errorf("%s got through: %v; %v", a.Name, leaks, at)
	}
}

// relay is b relayed under label with endpoints, and with an
// advertisement of them signed by key, b's device key, as the device
// would publish it (endpoints that cannot be signed only as raw ones).
func (f *fixture) relay(t *testing.T, label string, b certs.Bundle, key crypto.Signer, endpoints ...netip.AddrPort) *wire.Event {
	t.Helper()
	id, err := certs.Verify(b, f.PKI.Roots(), nil, time.Now())
	if err != nil {
		t.Fatalf("relaying %s: %v", label, err)
	}
	return upsert(wire.Peer{Label: label, Bundle: b.Wire(), Endpoints: endpoints,
		Advertisement: signAdvert(t, key, id.DeviceID, id.WireGuardKey, time.Now(), signable(endpoints)...)})
}

// TestReplayAfterRotation: a device's old certificate, for a key it has
// since replaced (say because it leaked), replayed by the coordinator
// after the new one. Two certificates for the same device ID, the old one
// issued an hour earlier.
func TestReplayAfterRotation(t *testing.T) {
	f := newFixture(t)
	oldKey := f.newAttacker(t, "old-key")
	newKey := f.newAttacker(t, "new-key", oldKey.Addrs...)
	p := f.legitProfile(t, oldKey)
	now := time.Now()
	oldCert, oldCertKey := f.PKI.IssueMachine(t, p, testca.WithValidity(now.Add(-2*time.Hour), now.Add(22*time.Hour)))
	p.WireGuardKey = newKey.Pub
	newCert, newCertKey := f.PKI.IssueMachine(t, p, testca.WithValidity(now.Add(-time.Hour), now.Add(23*time.Hour)))
	const label = "rotating"

	// Before the rotation the old certificate is the device's: the harness
	// sees its key get through.
	send(t, f.Victim.Conn, f.relay(t, label, oldCert, oldCertKey, oldKey.Endpoint()))
	f.sync(t)
	mustReach(t, f, oldKey)

	// The device rotates its key.
	send(t, f.Victim.Conn, f.relay(t, label, newCert, newCertKey, newKey.Endpoint()))
	st := f.sync(t)
	if ps, ok := peerOf(st, p.DeviceID); !ok || ps.WireGuardKey != newKey.Pub {
		t.Fatalf("after the rotation the device is %+v (found %v), want key %v", ps, ok, newKey.Pub)
	}
	if _, ok := devicePeer(t, f.Victim, oldKey.Pub); ok {
		t.Errorf("the rotated-out key is still a WireGuard peer")
	}

	// The coordinator replays the old certificate, under the device's
	// label and under another.
	for _, l := range []string{label, "replay"} {
		send(t, f.Victim.Conn, f.relay(t, l, oldCert, oldCertKey, oldKey.Endpoint()))
		st := f.sync(t)
		if r, ok := rejectionOf(st, l); !ok || r.Reason != agent.ReasonReplayed {
			t.Errorf("replay under %q: got %+v (refused: %v), want refusal %q", l, r, ok, agent.ReasonReplayed)
		}
		if ps, ok := peerOf(st, p.DeviceID); !ok || ps.WireGuardKey != newKey.Pub {
			t.Errorf("replay under %q changed the device to %+v (found %v)", l, ps, ok)
		}
	}
	if _, ok := devicePeer(t, f.Victim, oldKey.Pub); ok {
		t.Errorf("the replayed key is a WireGuard peer")
	}

	// The old key gets nothing through (not even over the session it had);
	// the new one does.
	newKey.WaitHandshake(t, f)
	mark := f.Victim.Probe.Mark()
	oldAt, newAt := oldKey.Try(f, attackWindow), newKey.Try(f, attackWindow)
	oldAt.Wait()
	newAt.Wait()
	got := f.Victim.Probe.Since(mark)
	if leaks := oldAt.sentBy(got, nil); len(leaks) > 0 || oldAt.Acked() {
		t.Errorf("the replayed key got through: %v; %v", leaks, oldAt)
	}
	if !newAt.Acked() {
		t.Errorf("the device's current key did not get through: %v", newAt)
	}
	checkDeviceMatchesStatus(t, f.Victim)
}

// TestExpiredPeerIsRemoved: a coordinator cannot keep a peer configured
// beyond its certificate by staying silent or by relaying it again.
func TestExpiredPeerIsRemoved(t *testing.T) {
	f := newFixture(t)
	a := f.newAttacker(t, "short-lived")
	now := f.Victim.Clock.Now()
	b, bKey := f.PKI.IssueMachine(t, f.legitProfile(t, a), testca.WithValidity(now.Add(-time.Minute), now.Add(shortLife)))
	const label = "short-lived"
	send(t, f.Victim.Conn, f.relay(t, label, b, bKey, a.Endpoint()))
	f.sync(t)
	mustReach(t, f, a)

	f.Victim.Clock.AdvanceTo(b.Machine.NotAfter.Add(time.Second)) // the certificate expires; nothing sleeps
	waitStatus(t, f.Victim, "the expired peer to be removed", func(st *agent.Status) bool {
		r, ok := rejectionOf(st, label)
		return ok && r.Reason == certs.ReasonExpired
	})
	if _, ok := devicePeer(t, f.Victim, a.Pub); ok {
		t.Errorf("the expired peer's key is still a WireGuard peer")
	}
	send(t, f.Victim.Conn, f.relay(t, label, b, bKey, a.Endpoint()))
	st := f.sync(t)
	if r, ok := rejectionOf(st, label); !ok || r.Reason != certs.ReasonExpired {
		t.Errorf("relayed again after expiry: got %+v (refused: %v), want refusal %q", r, ok, certs.ReasonExpired)
	}
	mustNotReach(t, f, a)
	checkDeviceMatchesStatus(t, f.Victim)
}

// TestUnusableEndpointOrphansPeer: the coordinator relays a verified
// peer's own bundle again, with an endpoint the WireGuard device refuses
// (0.0.0.0:1). An agent that forgot the peer on that refusal while the
// device kept it would let the coordinator keep a peer in the mesh past
// its removal or its certificate's expiry, which the design says it
// cannot. (Found by this suite; fixed in agent/peers.go.)
func TestUnusableEndpointOrphansPeer(t *testing.T) {
	t.Parallel()
	bad := []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:1")}

	t.Run("removed-peer", func(t *testing.T) {
		f := newFixture(t)
		f.connectPeer(t)
		p := f.Peer.AsPeer()
		p.Endpoints = bad
		send(t, f.Victim.Conn, upsert(p))
		f.sync(t)
		checkDeviceMatchesStatus(t, f.Victim)
		send(t, f.Victim.Conn, &wire.Event{Type: wire.EventRemove, Label: p.Label})
		f.sync(t)
		if _, ok := devicePeer(t, f.Victim, f.Peer.Self.WireGuardKey); ok {
			t.Errorf("the removed peer is still a WireGuard peer")
		}
		mark := f.Victim.Probe.Mark()
		at := try(f.Peer.Agent.Device().Net(), f.Peer.V4(), f.Victim.Probe.Addr, newToken("removed"), attackWindow)
		at.Wait()
		if leaks := at.sentBy(f.Victim.Probe.Since(mark), nil); len(leaks) > 0 || at.Acked() {
			t.Errorf("the removed peer got through: %v; %v", leaks, at)
		}
	})
	t.Run("expired-peer", func(t *testing.T) {
		f := newFixture(t)
		a := f.newAttacker(t, "orphan")
		now := f.Victim.Clock.Now()
		b, bKey := f.PKI.IssueMachine(t, f.legitProfile(t, a), testca.WithValidity(now.Add(-time.Minute), now.Add(shortLife)))
		send(t, f.Victim.Conn, f.relay(t, "orphan", b, bKey, a.Endpoint()))
		f.sync(t)
		mustReach(t, f, a)
		send(t, f.Victim.Conn, f.relay(t, "orphan", b, bKey, bad...))
		f.sync(t)
		checkDeviceMatchesStatus(t, f.Victim)
		f.Victim.Clock.AdvanceTo(b.Machine.NotAfter.Add(time.Second)) // the certificate expires; nothing sleeps
		// Gone with the next sweep (every second).
		waitDevicePeerGone(t, f.Victim, a.Pub, time.Now().Add(2*time.Second), nil)
		mustNotReach(t, f, a)
	})
}
