package hostile_test

// Attacks of a compromised coordinator on revocation. The coordinator only
// carries the CRL the CA signs with its intermediate: it can withhold a new
// one, but then the revoked peer stays only until the certificate it uses
// expires; whatever it relays instead (an older CRL, one signed by a leaf,
// by another CA, or under the intermediate's name with another key, one
// that would un-revoke a peer) must leave the victim on the CRL it holds,
// with the reason in its status, and the revoked peer out of its WireGuard
// device and unable to get a packet through. When the CRL held is stale,
// an agent set to refuse-new keeps its peers and accepts no new one.
//
// The positive control comes first: a revocation at the real CA, relayed,
// takes the peer out of the victim's device within seconds and its packets
// stop reaching the victim's probe, so a harness that could not see a
// revocation take effect cannot pass the attacks.

import (
	"bytes"
	"context"
	"crypto/x509"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// crlEvent is a CRL as the coordinator relays it.
func crlEvent(der []byte) *wire.Event {
	return &wire.Event{Type: wire.EventDocument, Doc: &wire.Document{Kind: wire.DocCRL, Data: der}}
}

// crlNumber is the number of a CRL.
func crlNumber(t *testing.T, der []byte) *big.Int {
	t.Helper()
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("parsing CRL: %v", err)
	}
	return rl.Number
}

// relayCRL sends der to the victim and returns its status once it has
// handled it.
func (f *fixture) relayCRL(t *testing.T, der []byte) *agent.Status {
	t.Helper()
	send(t, f.Victim.Conn, crlEvent(der))
	return f.sync(t)
}

// currentCRL is the real CA's current CRL (it signs one when it opens).
func (f *fixture) currentCRL(t *testing.T) []byte {
	t.Helper()
	der := f.CA.CRL()
	if der == nil {
		t.Fatal("the CA has no CRL")
	}
	return der
}

// revokePeer revokes the legitimate peer at the real CA and returns the
// CRL the CA signed for it, which lists the peer's certificate.
func (f *fixture) revokePeer(t *testing.T) []byte {
	t.Helper()
	before := crlNumber(t, f.currentCRL(t))
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	if _, err := f.CA.Revoke(ctx, f.Peer.Self.DeviceID); err != nil {
		t.Fatalf("revoking the peer at the CA: %v", err)
	}
	der := f.currentCRL(t)
	if crlNumber(t, der).Cmp(before) <= 0 {
		t.Fatalf("the CA's CRL after the revocation has number %s, not above %s", crlNumber(t, der), before)
	}
	crl, err := certs.VerifyCRL(der, f.CA.Roots(), []*x509.Certificate{f.CA.Intermediate().Cert}, time.Now(), nil)
	if err != nil {
		t.Fatalf("the CA's own CRL does not verify: %v", err)
	}
	if !crl.IsRevoked(f.peerCert(t).SerialNumber) {
		t.Fatalf("the CA's CRL does not list the peer's certificate %s", f.Peer.Self.CertSerial)
	}
	return der
}

// peerCert is the machine certificate the peer enrolled with.
func (f *fixture) peerCert(t *testing.T) *x509.Certificate {
	t.Helper()
	b, err := certs.ParseBundle(f.Peer.Conn.Publish.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	return b.Machine
}

// peerShut checks that nothing the legitimate peer sends reaches the
// victim's probe within attackWindow.
func (f *fixture) peerShut(t *testing.T) {
	t.Helper()
	mark := f.Victim.Probe.Mark()
	at := try(f.Peer.Agent.Device().Net(), f.Peer.V4(), f.Victim.Probe.Addr, newToken("revoked"), attackWindow)
	at.Wait()
	if leaks := at.sentBy(f.Victim.Probe.Since(mark), []netip.Addr{f.Peer.V4()}); len(leaks) > 0 || at.Acked() {
		t.Errorf("the revoked peer got through: %v; %v", leaks, at)
	}
}

// peerRevoked checks the victim's verdict on the peer's label and that the
// peer's key is no WireGuard peer of the victim.
func (f *fixture) peerRevoked(t *testing.T, st *agent.Status, want certs.Reason) {
	t.Helper()
	label := string(f.Peer.Self.DeviceID)
	if r, ok := rejectionOf(st, label); !ok || r.Reason != want {
		t.Errorf("peer %s: got rejection %+v (refused: %v), want %q; status: %s", label, r, ok, want, asJSON(st))
	}
	if ps, ok := peerOf(st, f.Peer.Self.DeviceID); ok {
		t.Errorf("the revoked peer is a verified peer: %+v", ps)
	}
	if wp, ok := devicePeer(t, f.Victim, f.Peer.Self.WireGuardKey); ok {
		t.Errorf("the revoked peer's key is a WireGuard peer of the victim (AllowedIPs %v)", wp.AllowedIPs)
	}
}

// TestCRLRevocationReachesVictim is the positive control: the real CA
// revokes the peer, the coordinator relays the new CRL, and the victim
// takes the peer out of its device at once; the peer's packets stop
// arriving and the peer's bundle, relayed again, is refused as revoked.
func TestCRLRevocationReachesVictim(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	// The CRL the CA signed when it opened lists nothing: it changes
	// nothing.
	first := f.currentCRL(t)
	st := f.relayCRL(t, first)
	if st.CRL.Number != crlNumber(t, first).String() || st.CRL.Entries != 0 || st.CRL.Stale || st.CRL.Refused != "" {
		t.Errorf("after the CA's first CRL the victim's CRL status is %+v", st.CRL)
	}
	if _, ok := peerOf(st, f.Peer.Self.DeviceID); !ok {
		t.Fatalf("the CA's first CRL took the peer out")
	}

	der := f.revokePeer(t)
	sent := time.Now()
	send(t, f.Victim.Conn, crlEvent(der))
	st = waitStatus(t, f.Victim, "the revoked peer to be removed", func(st *agent.Status) bool {
		r, ok := rejectionOf(st, string(f.Peer.Self.DeviceID))
		return ok && r.Reason == certs.ReasonRevoked
	})
	t.Logf("revoked peer removed %s after the CRL was relayed", time.Since(sent).Round(time.Millisecond))
	if st.CRL.Number != crlNumber(t, der).String() || st.CRL.Entries < 1 || st.CRL.Stale || st.CRL.Refused != "" {
		t.Errorf("after the revocation the victim's CRL status is %+v, want number %s with the entry", st.CRL, crlNumber(t, der))
	}
	f.peerRevoked(t, st, certs.ReasonRevoked)
	f.peerShut(t)

	// The coordinator relays the peer's bundle again, under its label and
	// under another.
	for _, label := range []string{string(f.Peer.Self.DeviceID), "peer-again"} {
		p := f.Peer.AsPeer()
		p.Label = label
		send(t, f.Victim.Conn, upsert(p))
		st := f.sync(t)
		if r, ok := rejectionOf(st, label); !ok || r.Reason != certs.ReasonRevoked {
			t.Errorf("the revoked bundle relayed under %q: got %+v (refused: %v), want %q", label, r, ok, certs.ReasonRevoked)
		}
	}
	if _, ok := devicePeer(t, f.Victim, f.Peer.Self.WireGuardKey); ok {
		t.Errorf("the revoked peer's key is a WireGuard peer after being relayed again")
	}
	// The same CRL again (every reconnection) is no change and no refusal.
	st = f.relayCRL(t, der)
	if st.CRL.Number != crlNumber(t, der).String() || st.CRL.Refused != "" {
		t.Errorf("the held CRL relayed again: CRL status %+v", st.CRL)
	}
	f.peerShut(t)
	checkDeviceMatchesStatus(t, f.Victim)
}

// TestCRLWithheld: the CA revokes the peer but the coordinator keeps the
// new CRL from the victim and keeps relaying the peer's bundle, a
// short-lived renewal. The peer stays exactly until that certificate
// expires, and then neither it nor the peer's older, longer certificate
// (revoked, but the victim cannot know) brings it back.
func TestCRLWithheld(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	label := string(f.Peer.Self.DeviceID)
	// A renewal of the peer, by the real intermediate: same device, key
	// and addresses, issued after its enrollment, valid until the test
	// moves the victim's clock past it.
	p := f.PKI.NewProfile(t, string(f.Peer.Self.Hostname))
	asPeer(f, &p)
	p.WireGuardKey = f.Peer.Self.WireGuardKey
	p.Attestation = f.Peer.Self.Attestation
	p.Tags = f.Peer.Self.Tags
	now := f.Victim.Clock.Now()
	short, _ := f.PKI.IssueMachine(t, p, testca.WithValidity(now.Add(-30*time.Second), now.Add(shortLife)))
	expiry := short.Machine.NotAfter
	relayShort := func() *agent.Status {
		send(t, f.Victim.Conn, upsert(wire.Peer{Label: label, Bundle: short.Wire(), Endpoints: f.Peer.Conn.Publish.Endpoints}))
		return f.sync(t)
	}
	st := relayShort()
	if ps, ok := peerOf(st, p.DeviceID); !ok || !ps.CertNotAfter.Equal(expiry) {
		t.Fatalf("the short-lived renewal was not taken: %+v (found %v); status %s", ps, ok, asJSON(st))
	}
	f.peerReaches(t)

	withheld := f.revokePeer(t) // and not relayed
	st = relayShort()
	if r, ok := rejectionOf(st, label); ok {
		t.Fatalf("without the CRL the victim refused the peer: %+v", r)
	}
	// Before the certificate expires, the peer still gets through: this is
	// what withholding the CRL buys the coordinator.
	f.peerReaches(t)
	if f.Victim.Clock.Now().After(expiry) {
		t.Fatalf("the test was too slow: the short-lived certificate expired at %s before its traffic was checked", expiry.Format(time.TimeOnly))
	}

	f.Victim.Clock.AdvanceTo(expiry.Add(time.Second)) // the certificate expires; nothing sleeps
	st = waitStatus(t, f.Victim, "the expired peer to be removed", func(st *agent.Status) bool {
		r, ok := rejectionOf(st, label)
		return ok && r.Reason == certs.ReasonExpired
	})
	t.Logf("peer removed %s after its certificate expired", f.Victim.Clock.Now().Sub(expiry).Round(time.Millisecond))
	f.peerRevoked(t, st, certs.ReasonExpired)
	// Relaying it again does not help, nor does falling back to the peer's
	// enrollment certificate, which is revoked but still unexpired.
	st = relayShort()
	if r, ok := rejectionOf(st, label); !ok || r.Reason != certs.ReasonExpired {
		t.Errorf("the expired renewal relayed again: got %+v (refused: %v), want %q", r, ok, certs.ReasonExpired)
	}
	send(t, f.Victim.Conn, upsert(f.Peer.AsPeer()))
	st = f.sync(t)
	if r, ok := rejectionOf(st, label); !ok || r.Reason != agent.ReasonReplayed {
		t.Errorf("the peer's older certificate relayed after the renewal: got %+v (refused: %v), want %q", r, ok, agent.ReasonReplayed)
	}
	f.peerRevoked(t, st, agent.ReasonReplayed)
	f.peerShut(t)

	// The withheld CRL, relayed late, is still the CA's and is taken.
	st = f.relayCRL(t, withheld)
	if st.CRL.Number != crlNumber(t, withheld).String() || st.CRL.Entries < 1 || st.CRL.Refused != "" {
		t.Errorf("the withheld CRL relayed late: CRL status %+v", st.CRL)
	}
	checkDeviceMatchesStatus(t, f.Victim)
}

// expectCRLRefused relays der and checks that the victim refused it for
// one of reasons while keeping the CRL it held (number and entries).
func (f *fixture) expectCRLRefused(t *testing.T, der []byte, reasons ...certs.Reason) *agent.Status {
	t.Helper()
	before := waitStatus(t, f.Victim, "status", func(*agent.Status) bool { return true })
	sent := time.Now()
	st := f.relayCRL(t, der)
	switch {
	case st.CRL.Refused == "" || st.CRL.RefusedAt.Before(sent):
		t.Errorf("the victim did not refuse the CRL: CRL status %+v", st.CRL)
	case !slices.ContainsFunc(reasons, func(r certs.Reason) bool { return strings.Contains(st.CRL.Refused, "("+string(r)+")") }):
		t.Errorf("the victim refused the CRL with %q, want one of %q", st.CRL.Refused, reasons)
	default:
		t.Logf("refused: %s", st.CRL.Refused)
	}
	if st.CRL.Number != before.CRL.Number || st.CRL.Entries != before.CRL.Entries || !st.CRL.NextUpdate.Equal(before.CRL.NextUpdate) {
		t.Errorf("the refused CRL changed the CRL held from %+v to %+v", before.CRL, st.CRL)
	}
	return st
}

// TestCRLRollback: after the CRL that revokes the peer, the CA's earlier
// CRL (lower number, no entry) is refused as a rollback and the peer stays
// out; so is a CRL under the held number with other content (a CA showing
// two views, which needs the intermediate's key).
func TestCRLRollback(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	older := f.currentCRL(t)
	newer := f.revokePeer(t)
	st := f.relayCRL(t, newer)
	f.peerRevoked(t, st, certs.ReasonRevoked)

	st = f.expectCRLRefused(t, older, certs.ReasonCRLRollback)
	f.peerRevoked(t, st, certs.ReasonRevoked)

	now := time.Now()
	n := crlNumber(t, newer).Int64()
	conflict := f.PKI.IssueCRL(t, n, now.Add(-time.Minute), now.Add(time.Hour))
	st = f.expectCRLRefused(t, conflict, certs.ReasonCRLConflict)

	// The coordinator relays the peer's bundle once more.
	send(t, f.Victim.Conn, upsert(f.Peer.AsPeer()))
	st = f.sync(t)
	f.peerRevoked(t, st, certs.ReasonRevoked)

	// The coordinator drops the stream and greets the reconnecting victim
	// as if it were new: the peer in the snapshot, the older CRL after it.
	reconnect := time.Now()
	f.reconnectVictim(t,
		&wire.Event{Type: wire.EventDocument, Doc: &wire.Document{Kind: wire.DocPolicy, Data: f.CA.Policy()}},
		crlEvent(older))
	st = f.sync(t)
	if !strings.Contains(st.CRL.Refused, "("+string(certs.ReasonCRLRollback)+")") || st.CRL.RefusedAt.Before(reconnect) {
		t.Errorf("the older CRL in the greeting after a reconnection: CRL status %+v, want a rollback refusal", st.CRL)
	}
	if st.CRL.Number != crlNumber(t, newer).String() {
		t.Errorf("after the reconnection the CRL held is %s, want %s", st.CRL.Number, crlNumber(t, newer))
	}
	f.peerRevoked(t, st, certs.ReasonRevoked)
	f.peerShut(t)
	checkDeviceMatchesStatus(t, f.Victim)
}

// TestForgedCRL: after the peer's revocation, CRLs that would un-revoke it
// (a higher number, no entry) but that the intermediate did not sign are
// refused and the peer stays out; the CA's next real CRL is still taken
// after them, and still keeps the peer out.
func TestForgedCRL(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	revocation := f.revokePeer(t)
	st := f.relayCRL(t, revocation)
	f.peerRevoked(t, st, certs.ReasonRevoked)
	held := crlNumber(t, revocation).Int64()

	now := time.Now()
	// Every forgery claims a number far above the held one, lists nothing
	// and is current for an hour.
	unrevoke := func() *x509.RevocationList {
		return testca.CRLTemplate(held+100, now.Add(-time.Minute), now.Add(time.Hour))
	}
	inter := f.PKI.Intermediate().Cert
	leaf, leafKey := f.PKI.IssueMachine(t, f.profile(t, "compromised", testca.RandomWireGuardKey(t)))
	other := testca.New(t, trustDomain, f.Overlays...)
	if !bytes.Equal(other.Intermediate().Cert.RawSubject, inter.RawSubject) {
		t.Logf("note: the other CA's intermediate is named %q, the real one %q", other.Intermediate().Cert.Subject, inter.Subject)
	}
	// The CA's own CRL with the peer's serial altered: the signature of
	// the intermediate over other content.
	serial := f.peerCert(t).SerialNumber.Bytes()
	if bytes.Count(revocation, serial) != 1 {
		t.Fatalf("the peer's serial is not exactly once in the CRL")
	}
	altered := bytes.Clone(revocation)
	altered[bytes.Index(altered, serial)+len(serial)-1] ^= 1

	for _, c := range []struct {
		name    string
		der     []byte
		reasons []certs.Reason
	}{
		// A device the attacker compromised signs a CRL with its machine
		// key, under its own name or the intermediate's.
		{"signed-by-a-leaf", testca.SignCRL(t, leaf.Machine, leafKey, unrevoke()),
			[]certs.Reason{certs.ReasonCRLSignedByLeaf, certs.ReasonCRLUntrusted}},
		{"signed-by-a-leaf-named-intermediate", testca.SignCRL(t, inter, leafKey, unrevoke()),
			[]certs.Reason{certs.ReasonCRLSignedByLeaf, certs.ReasonCRLUntrusted}},
		// Another CA of the same trust domain, with its own intermediate.
		{"other-ca", other.IssueCRL(t, held+100, now.Add(-time.Minute), now.Add(time.Hour)),
			[]certs.Reason{certs.ReasonCRLUntrusted}},
		{"other-ca-named-intermediate", testca.SignCRL(t, inter, other.Intermediate().Key, unrevoke()),
			[]certs.Reason{certs.ReasonCRLUntrusted}},
		{"other-ca-root", testca.SignCRL(t, other.Root().Cert, other.Root().Key, unrevoke()),
			[]certs.Reason{certs.ReasonCRLUntrusted}},
		{"real-crl-altered", altered, []certs.Reason{certs.ReasonCRLUntrusted, certs.ReasonCRLMalformed}},
		{"truncated", revocation[:len(revocation)/2], []certs.Reason{certs.ReasonCRLMalformed}},
		{"trailing-data", append(bytes.Clone(revocation), 0, 0), []certs.Reason{certs.ReasonCRLMalformed}},
		{"garbage", []byte("not a CRL"), []certs.Reason{certs.ReasonCRLMalformed}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := f.expectCRLRefused(t, c.der, c.reasons...)
			if st.CRL.Number != crlNumber(t, revocation).String() {
				t.Errorf("the CRL held is now %s, want %s", st.CRL.Number, crlNumber(t, revocation))
			}
			// The coordinator follows the forgery with the peer's bundle.
			send(t, f.Victim.Conn, upsert(f.Peer.AsPeer()))
			st = f.sync(t)
			f.peerRevoked(t, st, certs.ReasonRevoked)
		})
	}
	f.peerShut(t)

	// The forged numbers did not move the victim's: the CA's next CRL
	// (one above the revocation's) is taken, and keeps the peer out.
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	if err := f.CA.RefreshCRL(ctx); err != nil {
		t.Fatal(err)
	}
	next := f.currentCRL(t)
	st = f.relayCRL(t, next)
	if st.CRL.Number != crlNumber(t, next).String() || st.CRL.Entries < 1 {
		t.Errorf("the CA's next CRL (%s) after the forgeries: CRL status %+v", crlNumber(t, next), st.CRL)
	}
	send(t, f.Victim.Conn, upsert(f.Peer.AsPeer()))
	st = f.sync(t)
	f.peerRevoked(t, st, certs.ReasonRevoked)
	checkDeviceMatchesStatus(t, f.Victim)
}

// crlStaleGrace is the stale victims' grace past a CRL's nextUpdate.
const crlStaleGrace = time.Second

// replaceVictim starts another agent, configured by edit, and makes it
// the fixture's victim (with the probe listener). The fixture's first
// victim keeps running, unused.
func (f *fixture) replaceVictim(t *testing.T, name string, edit func(*agent.Config)) *node {
	t.Helper()
	n := f.startAgent(t, f.CAURL, name, edit)
	startListener(t, n)
	f.Victim = n
	return n
}

// TestStaleCRL: the CA's last CRL reaches the victim, then the coordinator
// withholds every newer one. Once the CRL is past its nextUpdate by more
// than the grace, a victim set to refuse-new says so in its status, keeps
// the peer it has and refuses a new, validly certified one; a fresh CRL
// ends that. A victim set to keep (the default) only says so.
func TestStaleCRL(t *testing.T) {
	t.Parallel()
	t.Run("refuse-new", func(t *testing.T) {
		f := newFixture(t)
		f.replaceVictim(t, "strict", func(c *agent.Config) {
			c.CRLStalePolicy, c.CRLGrace = agent.DegradedRefuseNew, crlStaleGrace
		})
		f.connectPeer(t)
		a := f.newAttacker(t, "newcomer")
		b, bKey := f.PKI.IssueMachine(t, f.legitProfile(t, a))
		newcomer := f.relay(t, "newcomer", b, bKey, a.Endpoint())
		// The CA's next CRL as it would sign it, current until the test
		// moves the victim's clock past it.
		now := f.Victim.Clock.Now()
		n := crlNumber(t, f.currentCRL(t)).Int64() + 1
		last := f.PKI.IssueCRL(t, n, now.Add(-time.Minute), now.Add(shortLife))
		st := f.relayCRL(t, last)
		if st.CRL.Number != big.NewInt(n).String() || st.CRL.Stale || st.CRL.StalePolicy != agent.DegradedRefuseNew {
			t.Fatalf("the victim's CRL status is %+v, want number %d, fresh, policy %s", st.CRL, n, agent.DegradedRefuseNew)
		}
		// While the CRL is fresh, a new peer is taken (and taken out again,
		// so that it is new once more later).
		send(t, f.Victim.Conn, newcomer)
		st = f.sync(t)
		if r, refused := rejectionOf(st, "newcomer"); refused {
			t.Fatalf("with a fresh CRL the new peer was refused: %+v", r)
		}
		if _, ok := devicePeer(t, f.Victim, a.Pub); !ok {
			t.Fatalf("with a fresh CRL the new peer is not a WireGuard peer")
		}
		send(t, f.Victim.Conn, &wire.Event{Type: wire.EventRemove, Label: "newcomer"})
		f.sync(t)

		f.Victim.Clock.AdvanceTo(st.CRL.NextUpdate.Add(crlStaleGrace + time.Second)) // nothing sleeps
		st = waitStatus(t, f.Victim, "the CRL to go stale", func(st *agent.Status) bool { return st.CRL.Stale })
		t.Logf("stale: %+v", st.CRL)
		// The peer the victim has stays, and the coordinator may update it.
		send(t, f.Victim.Conn, upsert(f.Peer.AsPeer()))
		st = f.sync(t)
		if r, ok := rejectionOf(st, string(f.Peer.Self.DeviceID)); ok {
			t.Errorf("with a stale CRL the existing peer was refused: %+v", r)
		}
		f.peerReaches(t)
		// A new one is refused, however well certified.
		send(t, f.Victim.Conn, newcomer)
		st = f.sync(t)
		if r, ok := rejectionOf(st, "newcomer"); !ok || r.Reason != agent.ReasonCRLStale {
			t.Errorf("with a stale CRL the new peer: got %+v (refused: %v), want %q", r, ok, agent.ReasonCRLStale)
		}
		if _, ok := devicePeer(t, f.Victim, a.Pub); ok {
			t.Errorf("with a stale CRL the new peer's key is a WireGuard peer")
		}
		mustNotReach(t, f, a)

		// A fresh CRL: the new peer is taken and gets through.
		now = f.Victim.Clock.Now()
		fresh := f.PKI.IssueCRL(t, n+1, now.Add(-time.Minute), now.Add(time.Hour))
		st = f.relayCRL(t, fresh)
		if st.CRL.Stale || st.CRL.Number != big.NewInt(n+1).String() {
			t.Errorf("after a fresh CRL the CRL status is %+v", st.CRL)
		}
		send(t, f.Victim.Conn, newcomer)
		st = f.sync(t)
		if r, ok := rejectionOf(st, "newcomer"); ok {
			t.Fatalf("with a fresh CRL again the new peer was refused: %+v", r)
		}
		mustReach(t, f, a)
		checkDeviceMatchesStatus(t, f.Victim)
	})
	t.Run("keep", func(t *testing.T) {
		f := newFixture(t)
		f.connectPeer(t)
		now := time.Now()
		n := crlNumber(t, f.currentCRL(t)).Int64() + 1
		// Past its nextUpdate by more than the default grace (10 min).
		old := f.PKI.IssueCRL(t, n, now.Add(-2*time.Hour), now.Add(-time.Hour))
		st := f.relayCRL(t, old)
		if st.CRL.Number != big.NewInt(n).String() || !st.CRL.Stale || st.CRL.StalePolicy != agent.DegradedKeep {
			t.Fatalf("the victim's CRL status is %+v, want number %d, stale, policy %s", st.CRL, n, agent.DegradedKeep)
		}
		a := f.newAttacker(t, "newcomer")
		b, bKey := f.PKI.IssueMachine(t, f.legitProfile(t, a))
		send(t, f.Victim.Conn, f.relay(t, "newcomer", b, bKey, a.Endpoint()))
		st = f.sync(t)
		if r, ok := rejectionOf(st, "newcomer"); ok {
			t.Errorf("with policy keep a new peer was refused: %+v", r)
		}
		if _, ok := devicePeer(t, f.Victim, a.Pub); !ok {
			t.Errorf("with policy keep the new peer is not a WireGuard peer")
		}
		f.peerReaches(t)
		checkDeviceMatchesStatus(t, f.Victim)
		// agent.DegradedKeep's documentation: "Status and logs say the CRL
		// is stale".
		deadline := time.Now().Add(3 * time.Second) // the sweep notices within a second
		for !strings.Contains(strings.ToLower(f.Victim.logs.String()), "crl is stale") {
			if time.Now().After(deadline) {
				t.Error("with policy keep the agent did not log that its CRL is stale")
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
