package hostile_test

// The blast-radius table of ARCHITECTURE.md ("Blast radius (what each
// compromise buys an attacker)") as a test suite. For each row, the
// component compromised, every cell of the "cannot" column is attempted
// against the real code path (a real CA, real agents in userspace mode, the
// hostile coordinator, the CA's own keys where the row grants them) and
// must fail where it counts: no peer added, no packet delivered, no
// identity or key swapped, no address moved, no policy widened or rolled
// back, no revocation outliving the certificate, no history rewritten
// unnoticed, no certificate for another device. Subtests are named after
// the rows and cells:
//
//	TestBlastRadius/coordinator/cannot-add-a-node
//	TestBlastRadius/coordinator/cannot-swap-a-key
//	TestBlastRadius/coordinator/cannot-move-an-IP
//	TestBlastRadius/coordinator/cannot-widen-a-policy
//	TestBlastRadius/coordinator/cannot-replay-an-old-policy
//	TestBlastRadius/coordinator/cannot-hide-a-revocation-beyond-certificate-expiry
//	TestBlastRadius/IdP/can-log-in-as-any-user-on-an-enrolled-device (positive control)
//	TestBlastRadius/IdP/cannot-enroll-a-device
//	TestBlastRadius/IdP/cannot-enroll-a-TPM-attested-device
//	TestBlastRadius/IdP/cannot-act-outside-name-constraints
//	TestBlastRadius/online-intermediate/cannot-issue-outside-the-trust-domain-or-overlay-range
//	TestBlastRadius/online-intermediate/every-certificate-it-issues-must-be-in-the-log
//	TestBlastRadius/online-intermediate/cannot-erase-its-tracks-from-the-log
//	TestBlastRadius/one-device/cannot-act-as-another-device
//
// Each subtest has a positive control in the same fixture (the legitimate
// peer or a legitimately issued bundle gets through, a published policy
// takes effect, a real login or enrollment succeeds), so that a harness
// unable to see a success cannot pass. The deeper suites for each cell are
// in attack_test.go, policy_test.go, crl_test.go, lifecycle_test.go,
// user_test.go and log_test.go; these are their compact, row-by-row form.

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/x25519"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/audit"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/oidctest"
	"github.com/certmesh/certmesh/internal/testca"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/policy"
	"github.com/certmesh/certmesh/translog"
)

func TestBlastRadius(t *testing.T) {
	t.Parallel()
	t.Run("coordinator", func(t *testing.T) {
		t.Parallel()
		t.Run("cannot-add-a-node", brCoordinatorAddNode)
		t.Run("cannot-swap-a-key", brCoordinatorSwapKey)
		t.Run("cannot-move-an-IP", brCoordinatorMoveIP)
		t.Run("cannot-widen-a-policy", brCoordinatorWidenPolicy)
		t.Run("cannot-replay-an-old-policy", brCoordinatorReplayPolicy)
		t.Run("cannot-hide-a-revocation-beyond-certificate-expiry", brCoordinatorHideRevocation)
	})
	t.Run("IdP", brIdP)
	t.Run("online-intermediate", func(t *testing.T) {
		t.Parallel()
		t.Run("cannot-issue-outside-the-trust-domain-or-overlay-range", brIntermediateOutside)
		t.Run("every-certificate-it-issues-must-be-in-the-log", brIntermediateUnlogged)
		t.Run("cannot-erase-its-tracks-from-the-log", brIntermediateErase)
	})
	t.Run("one-device", func(t *testing.T) {
		t.Parallel()
		t.Run("cannot-act-as-another-device", brDeviceActAsAnother)
	})
}

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
		// The endpoint is the coordinator's to choose: the attacker gets
		// the peer's packets, sealed for the peer, and cannot send as it.
		{name: "peer-bundle-at-the-attackers-endpoint", src: peerAddrs, label: peerLabel,
			peer: func(_ *testing.T, f *fixture, a *attacker) wire.Peer {
				return wire.Peer{Bundle: f.Peer.Conn.Publish.Bundle, Endpoints: []netip.AddrPort{a.Endpoint()}}
			},
			check: func(t *testing.T, f *fixture, r *attackRun) {
				if ps, ok := peerOf(r.status, f.Peer.Self.DeviceID); !ok || !slices.Equal(ps.Addresses, f.Peer.Self.Addresses) {
					t.Errorf("the peer's addresses changed: %+v (found %v)", ps, ok)
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
	f.Coord.SetGreeting(policyEvent(v2))
	f.Victim.Conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	cn, err := f.Coord.WaitForAgent(ctx, f.Victim.Self.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	f.Victim.Conn = cn
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
	now := time.Now()
	short, _ := f.PKI.IssueMachine(t, p, testca.WithValidity(now.Add(-30*time.Second), now.Add(6*time.Second)))
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
	if time.Now().After(short.Machine.NotAfter) {
		t.Fatalf("too slow: the short-lived certificate expired before its traffic was checked")
	}

	time.Sleep(time.Until(short.Machine.NotAfter))
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
	if r, ok := rejectionOf(f.sync(t), label); !ok || (r.Reason != agent.ReasonRevoked && r.Reason != agent.ReasonReplayed) {
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

// ---- IdP: log in as any user on an enrolled device; cannot enroll a
// TPM-attested device, act outside name constraints.

// Policies for the IdP row: the IdP group db-admins may reach the victim's
// probe, only from TPM-attested devices, or from any device.
const (
	brAdminsOnTPM = `// blast radius: db admins, from TPM-attested devices only.
{
	"groups": {"group:db-admins": []},
	"rules": [
		{"name": "db admins on TPM devices", "from": ["group:db-admins"], "to": ["host:victim"], "ports": ["tcp:7007", "udp:7007"], "when": {"attestation": "tpm"}},
	],
	"tests": [
		{"from": {"user": "alice@corp.example", "groups": ["db-admins"], "attestation": "tpm"}, "to": "host:victim:7007", "expect": "accept"},
		{"from": {"user": "alice@corp.example", "groups": ["db-admins"]}, "to": "host:victim:7007", "expect": "drop"},
	],
}
`
	brAdminsAnywhere = `// blast radius: db admins, from any enrolled device.
{
	"groups": {"group:db-admins": []},
	"rules": [
		{"name": "db admins", "from": ["group:db-admins"], "to": ["host:victim"], "ports": ["tcp:7007", "udp:7007"]},
	],
	"tests": [
		{"from": {"user": "alice@corp.example", "groups": ["db-admins"]}, "to": "host:victim:7007", "expect": "accept"},
		{"from": "host:peer", "to": "host:victim:7007", "expect": "drop"},
	],
}
`
)

// brLogin logs n in at the CA through the compromised IdP: mallory signs
// in with her own password and the IdP rewrites the ID token with claims.
// It returns the agent's login state once the login ended.
func brLogin(t *testing.T, f *logFixture, n *node, claims map[string]any) agent.LoginState {
	t.Helper()
	f.IdP.SetAttack(oidctest.Attack{Claims: claims})
	defer f.IdP.SetAttack(oidctest.Attack{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*waitFor)
	defer cancel()
	st, err := n.Agent.Login(ctx, false)
	if err != nil {
		t.Fatalf("%s: starting a login: %v", n.Name, err)
	}
	redirect, err := f.IdP.Login(ctx, st.AuthURL, "mallory@"+idpDomain, idpPassword)
	if err != nil {
		t.Fatalf("signing in at the IdP: %v", err)
	}
	// The browser delivers the redirect to the CA's callback.
	hc := audit.HTTPClient(f.CA.Roots(), waitFor)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, redirect.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("delivering the IdP's redirect to the CA: %v", err)
	}
	resp.Body.Close()
	for {
		ls := n.Agent.LoginStatus()
		if ls.LoginID == st.LoginID && (ls.Status == wire.LoginDone || ls.Status == wire.LoginFailed) {
			return ls
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: the login did not end: %+v", n.Name, ls)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// brNewEnrollment is a complete, valid enrollment request for a new device
// (fresh device and WireGuard keys, a nonce from the CA, the CSR and the
// proof of possession) with token as its token.
func brNewEnrollment(t *testing.T, f *fixture, host, token string) wire.EnrollRequest {
	t.Helper()
	key, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	wg, err := wgdev.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, nonce, proof := brProofs(t, f, key, wg)
	return wire.EnrollRequest{Token: token, Hostname: host, CSR: csr, WireGuardKey: wg.Public(), Nonce: nonce, Proof: proof}
}

// brProofs is a CSR signed by the device key, a fresh nonce from the CA
// and the XEdDSA proof of possession of wg over both.
func brProofs(t *testing.T, f *fixture, device crypto.Signer, wg wgdev.PrivateKey) (csrDER []byte, nonce string, proof []byte) {
	t.Helper()
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, device)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	n, err := f.CA.NewNonce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	proof, err = x25519.Sign(rand.Reader, x25519.PrivateKey(wg[:]), wire.ProofMessage(n.Nonce, csr.RawSubjectPublicKeyInfo))
	if err != nil {
		t.Fatal(err)
	}
	return csrDER, n.Nonce, proof
}

// brConnectLogged introduces the victim and the peer to each other with
// their inclusion proofs, as an honest coordinator does, and checks that
// the peer's traffic reaches the victim.
func brConnectLogged(t *testing.T, f *logFixture) {
	t.Helper()
	v, p := f.Victim, f.Peer
	f.Coord.SetSnapshot(v.Self.DeviceID, f.loggedPeer(p))
	f.Coord.SetSnapshot(p.Self.DeviceID, f.loggedPeer(v))
	send(t, v.Conn, upsert(f.loggedPeer(p)))
	waitStatus(t, v, "the peer to be verified", func(st *agent.Status) bool { _, ok := peerOf(st, p.Self.DeviceID); return ok })
	send(t, p.Conn, upsert(f.loggedPeer(v)))
	waitStatus(t, p, "the victim to be verified", func(st *agent.Status) bool { _, ok := peerOf(st, v.Self.DeviceID); return ok })
	f.peerReaches(t)
}

// brIdP: a CA whose identity provider the attacker controls (it signs any
// claims with its real key); agents that require logging.
func brIdP(t *testing.T) {
	f := newLogFixture(t, logOptions{idp: true})
	f.IdP.AddUser(oidctest.User{Subject: "u-mallory", Email: "mallory@" + idpDomain, EmailVerified: true, Password: idpPassword})
	v, p := f.Victim, f.Peer
	brConnectLogged(t, f)
	const alice = "alice@" + idpDomain
	asAlice := map[string]any{"sub": "u-alice", "email": alice, "email_verified": true, "groups": []string{"db-admins"}}

	// What the row grants, and the positive control of the cells below:
	// mallory, through the IdP, becomes alice (db-admins) on the peer, a
	// token-enrolled device, and the victim sees her there.
	t.Run("can-log-in-as-any-user-on-an-enrolled-device", func(t *testing.T) {
		before := len(f.Coord.Published())
		ls := brLogin(t, f, p, asAlice)
		if ls.Status != wire.LoginDone || ls.User == nil || ls.User.Email != alice {
			t.Fatalf("the compromised IdP's login as alice: %+v", ls)
		}
		waitPub := time.Now().Add(waitFor)
		for len(f.latestPublish(p).Bundle.User) == 0 || len(f.Coord.Published()) == before {
			if time.Now().After(waitPub) {
				t.Fatalf("the peer did not publish its user certificate")
			}
			time.Sleep(20 * time.Millisecond)
		}
		lp := f.loggedPeer(p)
		if lp.UserInclusion == nil {
			t.Errorf("the peer published its user certificate without an inclusion proof")
		}
		send(t, v.Conn, upsert(lp))
		st := f.syncNode(t, v)
		ps, ok := peerOf(st, p.Self.DeviceID)
		if !ok || ps.User == nil || ps.User.Email != alice || !slices.Contains(ps.User.Groups, "db-admins") {
			t.Fatalf("the victim does not show alice (db-admins) on the peer: %+v (found %v)", ps, ok)
		}
		if ps.Attestation != certs.AttestationToken {
			t.Errorf("the peer shows attestation %q, want %q", ps.Attestation, certs.AttestationToken)
		}
		t.Logf("the victim shows %q, attestation %s", ps.Name, ps.Attestation)
	})
	if t.Failed() {
		t.FailNow() // without the login the cells below prove nothing
	}

	t.Run("cannot-enroll-a-device", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		defer cancel()
		devices := func() int {
			ds, err := f.CA.Devices(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return len(ds)
		}
		n := devices()
		idToken := f.IdP.MintIDToken(f.IdP.ValidClaims(idpClientID, "u-alice", ""), oidctest.KeyReal)
		for _, c := range []struct{ name, token string }{
			{"the IdP's ID token as the enrollment token", idToken},
			{"no token", ""},
		} {
			_, err := f.CA.EnrollFrom(ctx, brNewEnrollment(t, f.fixture, "idp-laptop", c.token), "127.0.0.1:1")
			if err == nil {
				t.Errorf("%s: the CA enrolled a device", c.name)
			} else {
				t.Logf("%s: refused (%s): %v", c.name, ca.CodeOf(err), err)
			}
		}
		// Nor can the IdP start a login without an enrolled device's
		// machine certificate.
		if _, err := f.CA.StartLogin(ctx, nil, wire.LoginStartRequest{CSR: brNewEnrollment(t, f.fixture, "x", "").CSR}); err == nil {
			t.Errorf("the CA started a login without a machine certificate")
		}
		if got := devices(); got != n {
			t.Errorf("the CA holds %d devices, had %d", got, n)
		}
		// Positive control: the same request with a token the CA issued.
		tok, _, err := f.CA.CreateToken(ctx, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.CA.EnrollFrom(ctx, brNewEnrollment(t, f.fixture, "real-laptop", tok), "127.0.0.1:1"); err != nil {
			t.Errorf("the same enrollment with a CA token was refused: %v", err)
		}
	})

	t.Run("cannot-enroll-a-TPM-attested-device", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		defer cancel()
		// TPM evidence the IdP cannot produce, with its ID token.
		req := brNewEnrollment(t, f.fixture, "fake-tpm", f.IdP.MintIDToken(f.IdP.ValidClaims(idpClientID, "u-alice", ""), oidctest.KeyReal))
		req.TPM = &wire.TPMEvidence{Session: "forged", ActivatedSecret: []byte("secret"), KeyPublic: []byte("key"),
			CertifyInfo: []byte("certify"), Signature: []byte("signature")}
		if _, err := f.CA.EnrollFrom(ctx, req, "127.0.0.1:1"); err == nil {
			t.Errorf("the CA enrolled a device on forged TPM evidence")
		} else {
			t.Logf("refused (%s): %v", ca.CodeOf(err), err)
		}
		// On the data plane: alice (db-admins) on a token-enrolled device
		// gets nothing through a rule that requires a TPM...
		f.publish(t, brAdminsOnTPM)
		f.peerTraffic(t, false)
		// ... and through the same rule without the condition she does
		// (positive control: her user certificate was accepted).
		f.publish(t, brAdminsAnywhere)
		f.peerTraffic(t, true)
	})

	t.Run("cannot-act-outside-name-constraints", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		defer cancel()
		held := f.latestPublish(p).Bundle.User
		for _, email := range []string{"mallory@evil.example", "alice@" + idpDomain + ".evil.example"} {
			ls := brLogin(t, f, p, map[string]any{"sub": "u-" + email, "email": email, "email_verified": true, "groups": []string{"db-admins"}})
			if ls.Status != wire.LoginFailed {
				t.Errorf("login as %s: %+v, want refused", email, ls)
			} else {
				t.Logf("login as %s refused: %s", email, ls.Message)
			}
		}
		us, err := f.CA.Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range us {
			if !strings.HasSuffix(string(u.Email), "@"+idpDomain) {
				t.Errorf("the CA recorded user %s", u.Email)
			}
		}
		if now := f.latestPublish(p).Bundle.User; string(now) != string(held) {
			t.Errorf("the peer published another user certificate after the refused logins")
		}
		// The user certificate the IdP did get names the trust domain only,
		// and chains under the intermediate's name constraints.
		b, err := certs.ParseBundle(f.latestPublish(p).Bundle)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range b.User.URIs {
			if u.Scheme != "spiffe" || u.Host != string(trustDomain) {
				t.Errorf("the user certificate names %s", u)
			}
		}
		if id, err := certs.Verify(b, f.CA.Roots(), time.Now()); err != nil || id.User == nil {
			t.Errorf("the user certificate does not verify: %v (user rejected: %v)", err, id.UserRejected)
		}
	})
	checkDeviceMatchesStatus(t, v)
}

// ---- online intermediate: issue certs inside its name constraints, every
// one visible in the log; cannot issue outside the trust domain/overlay
// range, erase its tracks from the log.

func brIntermediateOutside(t *testing.T) {
	f := newFixture(t)
	runAttacks(t, f, []attack{
		control,
		outsideTrustDomain, subTrustDomain, addressOutsideOverlay, addressPartlyOutsideOverlay,
		{name: "dns-name-outside-the-trust-domain", want: certs.ReasonNameConstraints, anyOf: []certs.Reason{certs.ReasonProfile},
			peer: issued(nil, testca.WithDNSNames("host.evil.example"))},
		signedBySubCA, // a CA it signed
	})
	// A user certificate naming another trust domain, on the peer's real
	// machine bundle: the user is refused, the machine stays.
	f.connectPeer(t)
	peerBundle, err := certs.ParseBundle(f.Peer.Conn.Publish.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	u := f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail), testca.WithURIs("spiffe://evil.example/user/u-1"))
	pp := f.Peer.AsPeer()
	pp.Bundle = withUser(f.Peer.Conn.Publish.Bundle, u)
	send(t, f.Victim.Conn, upsert(pp))
	ps := checkMachineUnchanged(t, f, f.sync(t), peerBundle)
	if ps.User != nil || ps.UserRejected == "" {
		t.Errorf("a user certificate naming evil.example: the peer shows user %+v (user_rejected %q), want it refused", ps.User, ps.UserRejected)
	} else {
		t.Logf("user refused: %s", ps.UserRejected)
	}
	checkPeerUnharmed(t, f)
}

// brIntermediateUnlogged: with require_logged, a certificate the
// intermediate issues is of no use on the mesh unless the CA logged it.
func brIntermediateUnlogged(t *testing.T) {
	f := newLogFixture(t, logOptions{})
	brConnectLogged(t, f) // positive control: the CA's logged certificates
	runAttacks(t, f.fixture, neverLoggedAttacks(f))
}

// brIntermediateErase: the CA's host is compromised (intermediate and log
// key): it rebuilds its log without the peer's certificate. An auditor
// that verified the log before, and an agent that holds a checkpoint,
// both notice.
func brIntermediateErase(t *testing.T) {
	f := newLogFixture(t, logOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*waitFor)
	defer cancel()
	state := filepath.Join(t.TempDir(), "audit.json")
	rep, err := audit.Verify(ctx, f.Log, f.CA.Roots(), state)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("the auditor raised alarms on the honest log: %+v", rep.Alarms)
	}
	held := f.holdCurrentCheckpoint(t)
	erased := f.Peer.Conn.Publish.Inclusion.Index
	f.growLog(t, 2)
	var kept []translog.Entry
	for i, e := range f.realEntries(t, held.Size) {
		if uint64(i) != erased {
			kept = append(kept, e)
		}
	}
	// Padded to the size the real log now has, which can prove it is not
	// an extension of the victim's tree.
	kept = append(kept, f.hiddenEntry(t), f.hiddenEntry(t), f.hiddenEntry(t))
	fork := openLog(t, f.logKeySigner(t), kept)
	if got, want := fork.Size(), f.parse(t, f.CA.Checkpoint()).Size; got != want {
		t.Fatalf("the rewritten log has %d entries, want %d", got, want)
	}

	t.Run("the-auditor-notices", func(t *testing.T) {
		h, err := fork.Handler(f.CA.LogKey())
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		c, err := translog.NewClient(srv.URL, srv.Client())
		if err != nil {
			t.Fatal(err)
		}
		rep, err := audit.Verify(ctx, c, f.CA.Roots(), state)
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() {
			t.Fatalf("the auditor found nothing wrong with the rewritten log: %+v", rep)
		}
		for _, a := range rep.Alarms {
			t.Logf("auditor: %s", a)
		}
	})
	t.Run("the-victim-notices", func(t *testing.T) {
		f.relayCheckpoint(t, f.Victim, fork.Checkpoint())
		f.expectLogAlarm(t, held, "")
	})
}

// ---- one device: act as that device until revoked or expired; cannot act
// as another device.

// brDeviceActAsAnother: the attacker holds an enrolled device (its
// certificate, its device key, its WireGuard key) and tries to be the
// legitimate peer, on the data plane and at the CA.
func brDeviceActAsAnother(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	peerBundle, err := certs.ParseBundle(f.Peer.Conn.Publish.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	var withUserID certs.DeviceID
	runAttacks(t, f, []attack{
		control, // its own certificate works: what the row grants
		// Its own certificate, its packets sent from the peer's address.
		{name: "own-certificate-sending-from-the-peers-address", src: peerAddrs, keyConfigured: true,
			peer: issued(func(f *fixture, p *certs.MachineProfile) { p.Addresses = f.freshAddrs() })},
		{name: "peer-certificate-with-its-own-key", want: certs.ReasonUntrusted, src: peerAddrs, label: peerLabel, peer: swappedKey},
		{name: "peer-identity-signed-with-its-own-device-key", want: certs.ReasonUntrusted, src: peerAddrs, label: peerLabel,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				own, ownKey := f.PKI.IssueMachine(t, f.profile(t, "compromised", testca.RandomWireGuardKey(t)))
				return issued(asPeer, testca.WithIssuer(&certs.KeyPair{Cert: own.Machine, Key: ownKey}),
					testca.WithIntermediates(own.Machine, f.PKI.Intermediate().Cert))(t, f, a)
			}},
		// Its own certificate with a user certificate of the peer's: it
		// still gets through as itself (the starter policy lets every
		// device in), but not as the peer's user.
		{name: "own-certificate-with-the-peers-user-certificate", keyConfigured: true, delivered: true,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				prof := f.legitProfile(t, a)
				withUserID = prof.DeviceID
				own, _ := f.PKI.IssueMachine(t, prof)
				u := f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail))
				return wire.Peer{Bundle: attachUser(own, u).Wire()}
			},
			check: func(t *testing.T, f *fixture, r *attackRun) {
				ps, ok := peerOf(r.status, withUserID)
				if !ok || ps.User != nil || !strings.Contains(ps.UserRejected, "("+string(certs.ReasonUserDeviceMismatch)+")") {
					t.Errorf("the attacker's device shows %+v (found %v), want no user, %q", ps, ok, certs.ReasonUserDeviceMismatch)
				}
			}},
	})
	checkPeerUnharmed(t, f)

	// At the CA: the victim's device is the compromised one (its keys read
	// from its state directory); it asks to renew into the peer.
	t.Run("renew-as-another-device", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		defer cancel()
		v := f.Victim
		deviceKey := readKey(t, filepath.Join(v.StateDir, "device.key"))
		vb, err := certs.ParseBundle(v.Conn.Publish.Bundle)
		if err != nil {
			t.Fatal(err)
		}
		chain := append([]*x509.Certificate{vb.Machine}, vb.Intermediates...)
		renew := func(device crypto.Signer, wgPub certs.WireGuardKey, wgPriv wgdev.PrivateKey) (wire.CertificateResponse, error) {
			csr, nonce, proof := brProofs(t, f, device, wgPriv)
			return f.CA.Renew(ctx, chain, wire.RenewRequest{CSR: csr, WireGuardKey: wgPub, Nonce: nonce, Proof: proof})
		}
		otherKey, err := certs.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name   string
			device crypto.Signer
			wgPub  certs.WireGuardKey
			wgPriv wgdev.PrivateKey
		}{
			{"the peer's WireGuard key, proven with its own", deviceKey, f.Peer.Self.WireGuardKey, v.WGKey},
			// Had it stolen the peer's WireGuard private key too.
			{"the peer's WireGuard key with its private key", deviceKey, f.Peer.Self.WireGuardKey, f.Peer.WGKey},
			{"another device key", otherKey, v.Self.WireGuardKey, v.WGKey},
		} {
			resp, err := renew(c.device, c.wgPub, c.wgPriv)
			if err == nil {
				t.Errorf("%s: renewed into device %s", c.name, resp.DeviceID)
			} else {
				t.Logf("%s: refused (%s): %v", c.name, ca.CodeOf(err), err)
			}
		}
		// Positive control: it renews as itself, and only as itself.
		resp, err := renew(deviceKey, v.Self.WireGuardKey, v.WGKey)
		if err != nil {
			t.Fatalf("the device could not renew as itself: %v", err)
		}
		nb, err := certs.ParseBundle(resp.Bundle)
		if err != nil {
			t.Fatal(err)
		}
		id, err := certs.Verify(nb, f.CA.Roots(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if id.DeviceID != v.Self.DeviceID || !slices.Equal(id.Addresses, v.Self.Addresses) || id.WireGuardKey != v.Self.WireGuardKey {
			t.Errorf("the renewal is for %s %v %v, want the device's own identity", id.DeviceID, id.Addresses, id.WireGuardKey)
		}
	})
}
