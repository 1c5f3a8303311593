package hostile_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/policy"
	"github.com/certmesh/certmesh/tstest/testca"
)

// ---- coordinator: withhold peers, delay CRLs until expiry; cannot add a
// node, swap a key, move an IP, widen a policy, replay an old policy.

// brCoordinatorAddNode: the coordinator holds the CA's server TLS key and
// every bundle it relays, but no key that issues machine certificates.
func brCoordinatorAddNode(t *testing.T) {
	f := newFixture(t)
	other := testca.New(t, trustDomain, f.Overlays...)
	server := brServerKeyPair(t, f)
	runAttacks(t, f, []attack{
		control,
		{name: "certificate-from-another-CA", want: certs.ReasonUntrusted,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				b, _ := other.IssueMachine(t, f.legitProfile(t, a), testca.WithIntermediates(f.PKI.Intermediate().Cert))
				return wire.Peer{Bundle: b.Wire()}
			}},
		{name: "self-signed", want: certs.ReasonSelfSigned, peer: issued(nil, testca.WithSelfSigned())},
		{name: "signed-with-the-coordinators-server-key", want: certs.ReasonUntrusted,
			peer: issued(nil, testca.WithIssuer(server), testca.WithIntermediates(server.Cert, f.PKI.Intermediate().Cert))},
		{name: "the-coordinators-server-certificate-as-a-peer", want: certs.ReasonProfile,
			peer: func(*testing.T, *fixture, *attacker) wire.Peer {
				return wire.Peer{Bundle: certs.Bundle{Machine: server.Cert, Intermediates: []*x509.Certificate{f.PKI.Intermediate().Cert}}.Wire()}
			}},
		{name: "endpoints-without-a-certificate", want: certs.ReasonMalformed,
			peer: func(*testing.T, *fixture, *attacker) wire.Peer { return wire.Peer{} }},
	})
}

// brServerKeyPair is the CA's server TLS certificate and key, which the
// coordinator holds.
func brServerKeyPair(t *testing.T, f *fixture) *certs.KeyPair {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(f.StateDir, ca.ServerCertFile))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := certs.ParsePEM(pem)
	if err != nil {
		t.Fatal(err)
	}
	return &certs.KeyPair{Cert: cs[0], Key: readKey(t, filepath.Join(f.StateDir, ca.ServerKeyFile))}
}

// brWithFields turns an event into its JSON line with fields added to the
// event and to its peer (claims the coordinator makes beside the bundle).
func brWithFields(fields map[string]any) func(*testing.T, *wire.Event) []byte {
	return func(t *testing.T, ev *wire.Event) []byte {
		raw, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		peer := m["peer"].(map[string]any)
		for k, v := range fields {
			peer[k] = v
			m[k] = v
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
}

// brCoordinatorSwapKey: the coordinator tries to have the victim send the
// legitimate peer's traffic to (and take it from) a key it holds.
func brCoordinatorSwapKey(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	var attackerKey certs.WireGuardKey
	runAttacks(t, f, []attack{
		control,
		{name: "peer-certificate-with-the-attackers-key", want: certs.ReasonUntrusted, src: peerAddrs, label: peerLabel, peer: swappedKey},
		{name: "peer-certificate-with-the-attackers-key-new-label", want: certs.ReasonUntrusted, src: peerAddrs, peer: swappedKey},
		// The peer's real bundle, with the attacker's key claimed beside
		// it in the event: the key comes from the certificate only.
		{name: "peer-bundle-with-a-key-claimed-in-the-event", src: peerAddrs, label: peerLabel,
			peer: func(_ *testing.T, f *fixture, a *attacker) wire.Peer {
				attackerKey = a.Pub
				return wire.Peer{Bundle: f.Peer.Conn.Publish.Bundle, Endpoints: f.Peer.Conn.Publish.Endpoints}
			},
			line: func(t *testing.T, ev *wire.Event) []byte {
				k := attackerKey.String()
				return brWithFields(map[string]any{"wireguard_key": k, "public_key": k, "PublicKey": k, "key": k})(t, ev)
			},
			check: func(t *testing.T, f *fixture, r *attackRun) {
				if ps, ok := peerOf(r.status, f.Peer.Self.DeviceID); !ok || ps.WireGuardKey != f.Peer.Self.WireGuardKey {
					t.Errorf("the peer is no longer configured with its certified key: %+v (found %v)", ps, ok)
				}
			}},
	})
	checkPeerUnharmed(t, f)
}

// brCoordinatorMoveIP: the coordinator tries to have the victim route the
// legitimate peer's address to a key it holds.
func brCoordinatorMoveIP(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	all := []string{"0.0.0.0/0", "::/0"}
	runAttacks(t, f, []attack{
		control,
		// A legitimately certified device the attacker holds (fresh
		// addresses), relayed with every address claimed in the event.
		{name: "allowed-ips-claimed-in-the-event", src: peerAddrs, keyConfigured: true,
			peer: issued(func(f *fixture, p *certs.MachineProfile) { p.Addresses = f.freshAddrs() }),
			line: brWithFields(map[string]any{"allowed_ips": all, "allowedIPs": all, "AllowedIPs": all, "addresses": all, "Addresses": all})},
		// Even a certificate the CA issued naming the peer's addresses (an
		// old one for an address since reassigned) does not take them.
		{name: "conflicting-certificate-for-the-peers-addresses", want: agent.ReasonAddressConflict, src: peerAddrs, peer: issued(nil)},
		// The endpoint is not the coordinator's to choose: unsigned, the
		// attacker's is no candidate (TestCoordinatorCannotAimHandshakes).
		{name: "peer-bundle-at-the-attackers-endpoint", src: peerAddrs, label: peerLabel,
			peer: func(_ *testing.T, f *fixture, a *attacker) wire.Peer {
				return wire.Peer{Bundle: f.Peer.Conn.Publish.Bundle, Endpoints: []netip.AddrPort{a.Endpoint()}}
			},
			check: func(t *testing.T, f *fixture, r *attackRun) {
				if ps, ok := peerOf(r.status, f.Peer.Self.DeviceID); !ok || !slices.Equal(ps.Addresses, f.Peer.Self.Addresses) {
					t.Errorf("the peer's addresses changed: %+v (found %v)", ps, ok)
				}
				if wp, _ := devicePeer(t, f.Victim, f.Peer.Self.WireGuardKey); wp.Endpoint == r.a.Endpoint() {
					t.Errorf("the peer's endpoint is the attacker's %s", wp.Endpoint)
				}
			}},
	})
	checkPeerUnharmed(t, f)
}

// brCoordinatorWidenPolicy: the CA publishes a policy that denies the peer;
// the coordinator relays documents that would grant it.
func brCoordinatorWidenPolicy(t *testing.T) {
	f := newFixture(t)
	waitStatus(t, f.Victim, "the starter policy", func(st *agent.Status) bool { return st.Policy.Version == policy.StarterVersion })
	f.connectPeer(t)
	_, v2, _ := f.publish(t, policyDenyPeer) // positive control: the CA's policy takes effect
	f.peerTraffic(t, false)
	grant := []policyAttack{
		{name: "held rule edited to grant, as the next version", doc: edited(v2, denyRule, anyone, 3), want: policy.ReasonBadSignature},
		{name: "held rule edited to grant, as a huge version", doc: edited(v2, denyRule, anyone, math.MaxUint64), want: policy.ReasonBadSignature},
	}
	grant = append(grant, signedBy(f.hostileSigners(t), 3, policyAllowPeer, "granting v3")...)
	f.runPolicyAttacks(t, grant)
	f.peerTraffic(t, false)
	// The CA's next version is still taken (nothing above moved the
	// version held) and takes effect.
	f.publish(t, policyAllowPeer)
	f.peerTraffic(t, true)
}

// brCoordinatorReplayPolicy: older versions the CA really signed, relayed
// after newer ones, in the stream and in the greeting of a reconnection.
func brCoordinatorReplayPolicy(t *testing.T) {
	f := newFixture(t)
	starter := f.CA.Policy()
	waitStatus(t, f.Victim, "the starter policy", func(st *agent.Status) bool { return st.Policy.Version == policy.StarterVersion })
	f.connectPeer(t)
	_, v2, _ := f.publish(t, policyDenyPeer)
	f.peerTraffic(t, false)
	f.runPolicyAttacks(t, []policyAttack{
		{name: "starter v1 (everyone may reach everyone) replayed to grant", doc: func(*testing.T) []byte { return starter }, want: policy.ReasonRollback},
	})
	f.peerTraffic(t, false)
	info3, _, _ := f.publish(t, policyAllowPeer)
	f.peerTraffic(t, true)
	f.runPolicyAttacks(t, []policyAttack{
		{name: "denying v2 replayed to cut the peer off", doc: func(*testing.T) []byte { return v2 }, want: policy.ReasonRollback},
	})
	f.peerTraffic(t, true)
	// The coordinator drops the stream and greets the reconnecting victim
	// with v2.
	f.reconnectVictim(t, policyEvent(v2))
	if st := f.sync(t); st.Policy.Version != info3.Version || !strings.Contains(st.Policy.Refused, "("+string(policy.ReasonRollback)+")") {
		t.Errorf("after a reconnection greeted with v2 the policy status is %s, want version %d held and a rollback refusal", asJSON(st.Policy), info3.Version)
	}
	f.peerTraffic(t, true)
}

// brCoordinatorHideRevocation: the CA revokes the peer; the coordinator
// withholds the CRL and keeps relaying the peer's short-lived renewal. The
// peer stays exactly until that certificate expires; then neither it nor
// the peer's older (revoked, unexpired) certificate brings it back, and the
// CA's earlier CRL cannot undo the revocation once the real one arrives.
func brCoordinatorHideRevocation(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	label := peerLabel(f)
	p := f.PKI.NewProfile(t, string(f.Peer.Self.Hostname))
	asPeer(f, &p)
	p.WireGuardKey, p.Attestation, p.Tags = f.Peer.Self.WireGuardKey, f.Peer.Self.Attestation, f.Peer.Self.Tags
	now := f.Victim.Clock.Now()
	short, _ := f.PKI.IssueMachine(t, p, testca.WithValidity(now.Add(-30*time.Second), now.Add(shortLife)))
	relayShort := func() *agent.Status {
		send(t, f.Victim.Conn, upsert(wire.Peer{Label: label, Bundle: short.Wire(), Endpoints: f.Peer.Conn.Publish.Endpoints}))
		return f.sync(t)
	}
	if ps, ok := peerOf(relayShort(), p.DeviceID); !ok || !ps.CertNotAfter.Equal(short.Machine.NotAfter) {
		t.Fatalf("the peer's short-lived renewal was not taken: %+v (found %v)", ps, ok)
	}
	crlBefore := f.CA.CRL()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	if _, err := f.CA.Revoke(ctx, f.Peer.Self.DeviceID); err != nil {
		t.Fatalf("revoking the peer at the CA: %v", err)
	}
	revocation := f.CA.CRL() // withheld
	if r, ok := rejectionOf(relayShort(), label); ok {
		t.Fatalf("without the CRL the victim refused the peer: %+v", r)
	}
	f.peerReaches(t) // what withholding buys, until expiry
	if f.Victim.Clock.Now().After(short.Machine.NotAfter) {
		t.Fatalf("too slow: the short-lived certificate expired before its traffic was checked")
	}

	f.Victim.Clock.AdvanceTo(short.Machine.NotAfter.Add(time.Second)) // the certificate expires; nothing sleeps
	waitStatus(t, f.Victim, "the expired peer to be removed", func(st *agent.Status) bool {
		r, ok := rejectionOf(st, label)
		return ok && r.Reason == certs.ReasonExpired
	})
	if _, ok := devicePeer(t, f.Victim, f.Peer.Self.WireGuardKey); ok {
		t.Errorf("the peer's key is a WireGuard peer after its certificate expired")
	}
	if r, ok := rejectionOf(relayShort(), label); !ok || r.Reason != certs.ReasonExpired {
		t.Errorf("the expired renewal relayed again: %+v (refused %v), want %q", r, ok, certs.ReasonExpired)
	}
	send(t, f.Victim.Conn, upsert(f.Peer.AsPeer()))
	if r, ok := rejectionOf(f.sync(t), label); !ok || r.Reason != agent.ReasonReplayed {
		t.Errorf("the peer's older, revoked certificate relayed after the renewal: %+v (refused %v), want %q", r, ok, agent.ReasonReplayed)
	}
	brKeptOut(t, f, f.Peer)

	// The revocation relayed late is taken; the CA's earlier CRL does not
	// undo it.
	send(t, f.Victim.Conn, brCRLEvent(revocation))
	st := f.sync(t)
	if st.CRL.Entries < 1 || st.CRL.Refused != "" {
		t.Errorf("the withheld CRL relayed late: CRL status %+v", st.CRL)
	}
	send(t, f.Victim.Conn, brCRLEvent(crlBefore))
	st = f.sync(t)
	if !strings.Contains(st.CRL.Refused, "("+string(certs.ReasonCRLRollback)+")") || st.CRL.Entries < 1 {
		t.Errorf("the CA's earlier CRL after the revocation: CRL status %+v, want a rollback refusal and the revocation kept", st.CRL)
	}
	send(t, f.Victim.Conn, upsert(f.Peer.AsPeer()))
	if r, ok := rejectionOf(f.sync(t), label); !ok || (r.Reason != certs.ReasonRevoked && r.Reason != agent.ReasonReplayed) {
		t.Errorf("the revoked peer relayed again: %+v (refused %v)", r, ok)
	}
	brKeptOut(t, f, f.Peer)
	checkDeviceMatchesStatus(t, f.Victim)
}

func brCRLEvent(der []byte) *wire.Event {
	return &wire.Event{Type: wire.EventDocument, Doc: &wire.Document{Kind: wire.DocCRL, Data: der}}
}

// brKeptOut checks that nothing n sends from its overlay address reaches
// the victim's probe within attackWindow.
func brKeptOut(t *testing.T, f *fixture, n *node) {
	t.Helper()
	mark := f.Victim.Probe.Mark()
	at := try(n.Agent.Device().Net(), n.V4(), f.Victim.Probe.Addr, newToken(n.Name+"-kept-out"), attackWindow)
	at.Wait()
	if leaks := at.sentBy(f.Victim.Probe.Since(mark), []netip.Addr{n.V4()}); len(leaks) > 0 || at.Acked() {
		t.Errorf("%s got through to the victim: %v; %v", n.Name, leaks, at)
	}
}
