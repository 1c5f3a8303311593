package hostile_test

// Attacks of a compromised coordinator on a live agent. Each attack hands
// the victim a bundle for a WireGuard key the attacker holds, forged so
// that, were the victim to accept it, the attacker's own device would get
// traffic through to the victim's probe. For each, the test checks (a) the
// victim's verdict in its status, (b) its WireGuard device, and (c) the
// probe: nothing may arrive. A legitimately issued bundle in every batch,
// run through the same code, must be accepted and get through, so that a
// harness unable to see a success cannot pass the negative cases.

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// attack is one thing the hostile coordinator tries on the victim.
type attack struct {
	name string
	// src returns the addresses the attacker's device owns and sends from
	// (default: fresh overlay addresses, which legitProfile certifies).
	src func(f *fixture) []netip.Addr
	// label returns the label the coordinator relays it under (default
	// "atk-<name>").
	label func(f *fixture) string
	// peer builds what the coordinator relays for attacker a. Label and
	// Endpoints default to the label above and a's endpoint.
	peer func(t *testing.T, f *fixture, a *attacker) wire.Peer
	// line, if set, turns the event into the raw line that is sent.
	line func(t *testing.T, ev *wire.Event) []byte

	// want is the reason the victim must refuse it for (any of anyOf, if
	// set); "" means the victim must take the update.
	want  certs.Reason
	anyOf []certs.Reason
	// keyConfigured: a's key must end up as a WireGuard peer of the victim
	// (only for bundles the CA really issued to a).
	keyConfigured bool
	// delivered: a's traffic must reach the probe (positive controls).
	delivered bool
	// check, if set, makes more assertions after the attack window.
	check func(t *testing.T, f *fixture, r *attackRun)
}

// attackRun is one attack as it ran.
type attackRun struct {
	attack
	a      *attacker
	label  string
	sent   wire.Peer
	status *agent.Status // the victim's, once it had handled the attack
	at     *attempt
}

// runAttacks sends each attack in turn, waiting for the victim to handle
// it; then lets every attacker try to reach the probe at once for
// attackWindow and checks each attack in its own subtest. Finally it
// checks that nothing else got through and that the victim's device holds
// only verified peers with their certified AllowedIPs.
func runAttacks(t *testing.T, f *fixture, attacks []attack) {
	t.Helper()
	mark := f.Victim.Probe.Mark()
	runs := make([]*attackRun, 0, len(attacks))
	for _, c := range attacks {
		r := &attackRun{attack: c, label: "atk-" + c.name}
		var srcs []netip.Addr
		if c.src != nil {
			srcs = c.src(f)
		}
		r.a = f.newAttacker(t, "atk-"+c.name, srcs...)
		if c.label != nil {
			r.label = c.label(f)
		}
		r.sent = c.peer(t, f, r.a)
		if r.sent.Label == "" {
			r.sent.Label = r.label
		}
		r.label = r.sent.Label
		if r.sent.Endpoints == nil {
			r.sent.Endpoints = []netip.AddrPort{r.a.Endpoint()}
		}
		ev := upsert(r.sent)
		if c.line != nil {
			if err := f.Victim.Conn.SendRaw(c.line(t, ev)); err != nil {
				t.Fatal(err)
			}
		} else {
			send(t, f.Victim.Conn, ev)
		}
		r.status = f.sync(t)
		runs = append(runs, r)
	}
	for _, r := range runs {
		if r.keyConfigured {
			r.a.WaitHandshake(t, f)
		}
	}
	for _, r := range runs {
		r.at = r.a.Try(f, attackWindow)
	}
	for _, r := range runs {
		r.at.Wait()
	}
	got := f.Victim.Probe.Since(mark)
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) { r.verify(t, f, got) })
	}
	// Whatever reached the probe must be a positive control's.
	for _, d := range got {
		explained := f.legitimate(d)
		for _, r := range runs {
			if r.delivered && slices.ContainsFunc(r.at.sentBy(got, r.a.Addrs), func(x delivery) bool { return x.At == d.At && x.From == d.From }) {
				explained = true
			}
		}
		if !explained {
			t.Errorf("the probe received something no positive control sent: %v", d)
		}
	}
	checkDeviceMatchesStatus(t, f.Victim)
}

// verify checks one attack's outcome.
func (r *attackRun) verify(t *testing.T, f *fixture, got []delivery) {
	// (a) The victim's verdict.
	rej, refused := rejectionOf(r.status, r.label)
	switch {
	case r.want == "" && refused:
		t.Errorf("victim refused it (%s: %s), want it accepted", rej.Reason, rej.Error)
	case r.want != "" && !refused:
		t.Errorf("victim did not refuse it, want refusal for %q; status: %s", r.want, asJSON(r.status))
	case r.want != "" && rej.Reason != r.want && !slices.Contains(r.anyOf, rej.Reason):
		t.Errorf("victim refused it for %q (%s), want %q", rej.Reason, rej.Error, r.want)
	case refused:
		t.Logf("refused: %s: %s", rej.Reason, rej.Error)
	}
	// (b) The victim's WireGuard device.
	wp, configured := devicePeer(t, f.Victim, r.a.Pub)
	switch {
	case configured && !r.keyConfigured:
		t.Errorf("the attacker's key is a WireGuard peer of the victim (AllowedIPs %v)", wp.AllowedIPs)
	case !configured && r.keyConfigured:
		t.Errorf("the attacker's legitimately certified key is not a WireGuard peer of the victim")
	}
	// (c) The probe.
	leaks := r.at.sentBy(got, r.a.Addrs)
	if r.delivered {
		if !r.at.Acked() {
			t.Errorf("positive control did not get through: %v", r.at)
		}
		for _, proto := range []string{"tcp", "udp"} {
			if !slices.ContainsFunc(leaks, func(d delivery) bool { return d.Proto == proto && d.From.Addr() == r.a.V4() }) {
				t.Errorf("positive control: the probe recorded no %s delivery from %s: %v", proto, r.a.V4(), leaks)
			}
		}
	} else {
		if len(leaks) > 0 || r.at.Acked() {
			t.Errorf("attacker got through to the victim: %v; %v", leaks, r.at)
		}
		if !r.keyConfigured && r.a.HandshakeDone(t, f) {
			t.Errorf("attacker completed a WireGuard handshake with the victim")
		}
	}
	if r.check != nil {
		r.check(t, f, r)
	}
}

// issued is a bundle the real intermediate issues for a's key and
// addresses, after edit (if any) changed the profile.
func issued(edit func(f *fixture, p *certs.MachineProfile), opts ...testca.Option) func(*testing.T, *fixture, *attacker) wire.Peer {
	return func(t *testing.T, f *fixture, a *attacker) wire.Peer {
		p := f.legitProfile(t, a)
		if edit != nil {
			edit(f, &p)
		}
		b, key := f.PKI.IssueMachine(t, p, opts...)
		// Its device signs its endpoint, as a real one would.
		return wire.Peer{Bundle: b.Wire(), Advertisement: signAdvert(t, key, p.DeviceID, p.WireGuardKey, time.Now(), a.Endpoint())}
	}
}

// issuedWire is issued for tampering Go cannot parse.
func issuedWire(opts ...testca.Option) func(*testing.T, *fixture, *attacker) wire.Peer {
	return func(t *testing.T, f *fixture, a *attacker) wire.Peer {
		w, _ := f.PKI.IssueMachineWire(t, f.legitProfile(t, a), opts...)
		return wire.Peer{Bundle: w}
	}
}

// tamper is a legitimately issued bundle for a, then edited.
func tamper(edit func(t *testing.T, f *fixture, w *certs.WireBundle)) func(*testing.T, *fixture, *attacker) wire.Peer {
	return func(t *testing.T, f *fixture, a *attacker) wire.Peer {
		b, _ := f.PKI.IssueMachine(t, f.legitProfile(t, a))
		w := b.Wire()
		edit(t, f, &w)
		return wire.Peer{Bundle: w}
	}
}

// swappedKey is the peer's real bundle with the WireGuard key in its
// machine certificate overwritten by a's: what a coordinator that "only
// swaps the key" would send.
func swappedKey(t *testing.T, f *fixture, a *attacker) wire.Peer {
	w := f.Peer.Conn.Publish.Bundle
	old := f.Peer.Self.WireGuardKey
	if bytes.Count(w.Machine, old[:]) != 1 {
		t.Fatalf("the peer's WireGuard key is not exactly once in its certificate")
	}
	w.Machine = bytes.Replace(w.Machine, old[:], a.Pub[:], 1)
	return wire.Peer{Bundle: w}
}

func peerAddrs(f *fixture) []netip.Addr { return f.Peer.Self.Addresses }
func peerLabel(f *fixture) string       { return string(f.Peer.Self.DeviceID) }

// asPeer makes the profile claim the legitimate peer's device ID and
// addresses.
func asPeer(f *fixture, p *certs.MachineProfile) {
	p.DeviceID = f.Peer.Self.DeviceID
	p.Hostname = f.Peer.Self.Hostname
	p.Addresses = f.Peer.Self.Addresses
}

// olderThanPeer is the validity of a certificate issued before the
// legitimate peer's current one, still unexpired.
func olderThanPeer(t *testing.T, f *fixture) testca.Option {
	b, err := certs.ParseBundle(f.Peer.Conn.Publish.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	return testca.WithValidity(b.Machine.NotBefore.Add(-time.Hour), time.Now().Add(23*time.Hour))
}

// Certificates the real intermediate signs outside what its name
// constraints and the profile allow: TestForgedCertificates and the
// blast-radius row of the online intermediate both try them.
var (
	outsideTrustDomain = attack{name: "other-trust-domain", want: certs.ReasonNameConstraints,
		peer: issued(func(_ *fixture, p *certs.MachineProfile) { p.TrustDomain = "evil.example" })}
	// x509 lets a URI name constraint for corp.example admit its
	// subdomains; the profile check must not.
	subTrustDomain = attack{name: "sub-trust-domain", want: certs.ReasonWrongTrustDomain,
		peer: issued(func(_ *fixture, p *certs.MachineProfile) { p.TrustDomain = "evil." + trustDomain })}
	addressOutsideOverlay = attack{name: "ip-outside-overlay", want: certs.ReasonNameConstraints,
		src:  func(*fixture) []netip.Addr { return []netip.Addr{netip.MustParseAddr("192.0.2.10")} },
		peer: issued(nil)}
	addressPartlyOutsideOverlay = attack{name: "ip-partly-outside-overlay", want: certs.ReasonNameConstraints,
		peer: issued(func(_ *fixture, p *certs.MachineProfile) {
			p.Addresses = append(p.Addresses, netip.MustParseAddr("10.200.0.1"))
		})}
	// signedBySubCA: the intermediate (path length 0) signs a CA
	// certificate, which signs the peer.
	signedBySubCA = attack{name: "signed-by-sub-ca", want: certs.ReasonUntrusted,
		peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
			sub, key := f.PKI.IssueMachine(t, f.profile(t, "sub-ca", testca.RandomWireGuardKey(t)),
				testca.WithTemplate(func(c *x509.Certificate) {
					c.IsCA, c.BasicConstraintsValid = true, true
					c.KeyUsage |= x509.KeyUsageCertSign
				}))
			b, _ := f.PKI.IssueMachine(t, f.legitProfile(t, a),
				testca.WithIssuer(&certs.KeyPair{Cert: sub.Machine, Key: key}),
				testca.WithIntermediates(sub.Machine, f.PKI.Intermediate().Cert))
			return wire.Peer{Bundle: b.Wire()}
		}}
)

var control = attack{
	name: "control-legitimately-issued", peer: issued(nil),
	keyConfigured: true, delivered: true,
}

// TestPositiveControl shows that the harness sees an attacker get through
// when the victim accepts it: a bundle the real intermediate issued for
// the attacker's key and fresh addresses is verified and configured, and
// the attacker's connection and datagrams reach the probe.
func TestPositiveControl(t *testing.T) {
	f := newFixture(t)
	a := f.newAttacker(t, "legit")
	p := f.legitProfile(t, a)
	b, key := f.PKI.IssueMachine(t, p)
	mark := f.Victim.Probe.Mark()
	send(t, f.Victim.Conn, upsert(wire.Peer{Label: "legit", Bundle: b.Wire(), Endpoints: []netip.AddrPort{a.Endpoint()},
		Advertisement: signAdvert(t, key, p.DeviceID, p.WireGuardKey, time.Now(), a.Endpoint())}))
	st := waitStatus(t, f.Victim, "the legitimate bundle to be verified", func(st *agent.Status) bool {
		_, ok := peerOf(st, p.DeviceID)
		return ok
	})
	ps, _ := peerOf(st, p.DeviceID)
	if !ps.Verified || ps.WireGuardKey != a.Pub || !slices.Equal(ps.Addresses, a.Addrs) {
		t.Errorf("status shows %+v, want verified with key %v and addresses %v", ps, a.Pub, a.Addrs)
	}
	wp, ok := devicePeer(t, f.Victim, a.Pub)
	if !ok {
		t.Fatal("the attacker's certified key is not a WireGuard peer")
	}
	if want := hostPrefixes(a.Addrs); !samePrefixes(wp.AllowedIPs, want) {
		t.Errorf("AllowedIPs %v, want %v", wp.AllowedIPs, want)
	}
	a.WaitHandshake(t, f)
	at := a.Try(f, waitFor)
	at.Wait()
	if !at.Acked() {
		t.Fatalf("the legitimately certified device did not get through: %v", at)
	}
	got := at.sentBy(f.Victim.Probe.Since(mark), a.Addrs)
	for _, proto := range []string{"tcp", "udp"} {
		if !slices.ContainsFunc(got, func(d delivery) bool { return d.Proto == proto && d.From.Addr() == a.V4() }) {
			t.Errorf("the probe recorded no %s delivery from %s: %v", proto, a.V4(), got)
		}
	}
	if !a.HandshakeDone(t, f) {
		t.Error("no WireGuard handshake recorded on the attacker's device")
	}
	checkDeviceMatchesStatus(t, f.Victim)
}

// TestForgedCertificates: bundles no honest CA issued, or that the real
// intermediate issued but with something the profile forbids.
func TestForgedCertificates(t *testing.T) {
	f := newFixture(t)
	// Another CA of the same trust domain: its intermediate even has the
	// same subject name as the real one.
	other := testca.New(t, trustDomain, f.Overlays...)
	now := time.Now()
	runAttacks(t, f, []attack{
		control,
		{name: "other-ca", want: certs.ReasonUntrusted,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				b, _ := other.IssueMachine(t, f.legitProfile(t, a))
				return wire.Peer{Bundle: b.Wire()}
			}},
		{name: "other-ca-with-real-intermediate", want: certs.ReasonUntrusted,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				b, _ := other.IssueMachine(t, f.legitProfile(t, a), testca.WithIntermediates(f.PKI.Intermediate().Cert))
				return wire.Peer{Bundle: b.Wire()}
			}},
		{name: "self-signed", want: certs.ReasonSelfSigned, peer: issued(nil, testca.WithSelfSigned())},
		{name: "self-signed-with-real-intermediate", want: certs.ReasonSelfSigned,
			peer: issued(nil, testca.WithSelfSigned(), testca.WithIntermediates(f.PKI.Intermediate().Cert))},
		{name: "expired", want: certs.ReasonExpired,
			peer: issued(nil, testca.WithValidity(now.Add(-48*time.Hour), now.Add(-24*time.Hour)))},
		{name: "not-yet-valid", want: certs.ReasonNotYetValid,
			peer: issued(nil, testca.WithValidity(now.Add(time.Hour), now.Add(25*time.Hour)))},
		{name: "intermediate-missing", want: certs.ReasonUntrusted, peer: issued(nil, testca.WithIntermediates())},
		{name: "unrelated-intermediate", want: certs.ReasonUntrusted,
			peer: issued(nil, testca.WithIntermediates(other.Intermediate().Cert))},
		outsideTrustDomain, subTrustDomain, addressOutsideOverlay, addressPartlyOutsideOverlay,
		{name: "ca-true-leaf", want: certs.ReasonKeyUsage,
			peer: issued(nil, testca.WithTemplate(func(c *x509.Certificate) {
				c.IsCA, c.BasicConstraintsValid = true, true
			}))},
		{name: "server-auth-only", want: certs.ReasonKeyUsage,
			peer: issued(nil, testca.WithTemplate(func(c *x509.Certificate) {
				c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			}))},
		{name: "signed-by-a-leaf", want: certs.ReasonUntrusted,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				// A device the attacker compromised tries to mint a peer.
				leaf, key := f.PKI.IssueMachine(t, f.profile(t, "compromised", testca.RandomWireGuardKey(t)))
				b, _ := f.PKI.IssueMachine(t, f.legitProfile(t, a),
					testca.WithIssuer(&certs.KeyPair{Cert: leaf.Machine, Key: key}),
					testca.WithIntermediates(leaf.Machine, f.PKI.Intermediate().Cert))
				return wire.Peer{Bundle: b.Wire()}
			}},
		signedBySubCA,
		{name: "coordinator-server-cert", want: certs.ReasonProfile,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				pem, err := os.ReadFile(filepath.Join(f.StateDir, ca.ServerCertFile))
				if err != nil {
					t.Fatal(err)
				}
				cs, err := certs.ParsePEM(pem)
				if err != nil {
					t.Fatal(err)
				}
				return wire.Peer{Bundle: certs.Bundle{Machine: cs[0], Intermediates: []*x509.Certificate{f.PKI.Intermediate().Cert}}.Wire()}
			}},
		{name: "swapped-wireguard-key", want: certs.ReasonUntrusted, src: peerAddrs, peer: swappedKey},
		{name: "wg-key-missing", want: certs.ReasonProfile, peer: issued(nil, testca.WithoutExtension(certs.OIDWireGuardKey))},
		{name: "wg-key-duplicated", want: certs.ReasonMalformed, peer: issuedWire(testca.WithDuplicateExtension(certs.OIDWireGuardKey))},
		{name: "wg-key-short", want: certs.ReasonProfile,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				return issued(nil, testca.WithWireGuardKeyBytes(a.Pub[:31]))(t, f, a)
			}},
		{name: "wg-key-long", want: certs.ReasonProfile,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				// A parser that took the first 32 bytes would find a's key.
				return issued(nil, testca.WithWireGuardKeyBytes(append(a.Pub[:], 0)))(t, f, a)
			}},
		{name: "wg-key-not-octet-string", want: certs.ReasonProfile,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				return issued(nil, testca.WithExtension(pkix.Extension{Id: certs.OIDWireGuardKey, Value: a.Pub[:]}))(t, f, a)
			}},
		{name: "wg-key-critical", want: certs.ReasonUntrusted, anyOf: []certs.Reason{certs.ReasonProfile},
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				return issued(nil, testca.WithExtension(pkix.Extension{Id: certs.OIDWireGuardKey, Critical: true, Value: testca.OctetString(a.Pub[:])}))(t, f, a)
			}},
		{name: "garbage-der", want: certs.ReasonMalformed,
			peer: func(*testing.T, *fixture, *attacker) wire.Peer {
				junk := make([]byte, 600)
				rand.Read(junk)
				return wire.Peer{Bundle: certs.WireBundle{Machine: junk}}
			}},
		{name: "truncated-der", want: certs.ReasonMalformed,
			peer: tamper(func(_ *testing.T, _ *fixture, w *certs.WireBundle) { w.Machine = w.Machine[:len(w.Machine)-1] })},
		{name: "truncated-intermediate", want: certs.ReasonMalformed,
			peer: tamper(func(_ *testing.T, _ *fixture, w *certs.WireBundle) {
				w.Intermediates[0] = w.Intermediates[0][:len(w.Intermediates[0])/2]
			})},
		{name: "too-many-certificates", want: certs.ReasonMalformed,
			peer: tamper(func(_ *testing.T, _ *fixture, w *certs.WireBundle) {
				for len(w.Intermediates) < certs.MaxBundleCerts {
					w.Intermediates = append(w.Intermediates, w.Intermediates[0])
				}
			})},
		{name: "oversized-certificate", want: certs.ReasonMalformed,
			peer: issued(nil, testca.WithExtension(pkix.Extension{
				Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}, Value: testca.OctetString(make([]byte, certs.MaxCertSize)),
			}))},
	})
}

// TestCoordinatorLies: with the legitimate peer connected, the coordinator
// replays, relabels and recombines real bundles and addresses. The victim
// must refuse what conflicts, keep the legitimate peer exactly as its
// certificate says, and the peer must still get through afterwards.
func TestCoordinatorLies(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	other := testca.New(t, trustDomain, f.Overlays...)
	runAttacks(t, f, []attack{
		control,
		{name: "own-bundle-replayed", want: agent.ReasonSelf,
			peer: func(_ *testing.T, f *fixture, _ *attacker) wire.Peer { return f.Victim.AsPeer() }},
		{name: "own-bundle-other-label", want: agent.ReasonSelf,
			peer: func(_ *testing.T, f *fixture, _ *attacker) wire.Peer {
				return wire.Peer{Bundle: f.Victim.Conn.Publish.Bundle}
			}},
		// The coordinator cannot pick the endpoint: the attacker's, unsigned,
		// is no candidate, and the peer stays where it is.
		{name: "peer-bundle-attacker-endpoint", src: peerAddrs, label: peerLabel,
			peer: func(_ *testing.T, f *fixture, a *attacker) wire.Peer {
				return wire.Peer{Bundle: f.Peer.Conn.Publish.Bundle, Endpoints: []netip.AddrPort{a.Endpoint()}}
			},
			check: func(t *testing.T, f *fixture, r *attackRun) {
				ps, ok := peerOf(r.status, f.Peer.Self.DeviceID)
				if !ok || ps.WireGuardKey != f.Peer.Self.WireGuardKey {
					t.Errorf("the legitimate peer is not configured as before: %+v", ps)
				}
				if wp, _ := devicePeer(t, f.Victim, f.Peer.Self.WireGuardKey); wp.Endpoint == r.a.Endpoint() {
					t.Errorf("the legitimate peer's endpoint is the attacker's %s", wp.Endpoint)
				}
			}},
		{name: "peer-bundle-new-label", src: peerAddrs,
			peer: func(_ *testing.T, f *fixture, a *attacker) wire.Peer {
				return wire.Peer{Bundle: f.Peer.Conn.Publish.Bundle, Endpoints: []netip.AddrPort{a.Endpoint()}}
			}},
		{name: "address-conflict", want: agent.ReasonAddressConflict, src: peerAddrs, peer: issued(nil)},
		{name: "address-conflict-ipv6", want: agent.ReasonAddressConflict,
			peer: issued(func(f *fixture, p *certs.MachineProfile) {
				p.Addresses = []netip.Addr{p.Addresses[0], f.Peer.Self.Addresses[1]}
			})},
		{name: "victim-address", want: agent.ReasonAddressConflict,
			peer: issued(func(f *fixture, p *certs.MachineProfile) {
				p.Addresses = append(p.Addresses, f.Victim.V4())
			})},
		{name: "key-conflict", want: agent.ReasonKeyConflict,
			peer: issued(func(f *fixture, p *certs.MachineProfile) { p.WireGuardKey = f.Peer.Self.WireGuardKey })},
		{name: "victim-key", want: agent.ReasonKeyConflict, anyOf: []certs.Reason{agent.ReasonSelf, agent.ReasonDataPlane},
			peer: issued(func(f *fixture, p *certs.MachineProfile) { p.WireGuardKey = f.Victim.Self.WireGuardKey })},
		// An older certificate of the peer's device, for a key the attacker
		// holds, replayed after the current one.
		{name: "older-peer-cert", want: agent.ReasonReplayed, src: peerAddrs, label: peerLabel,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				return issued(asPeer, olderThanPeer(t, f))(t, f, a)
			}},
		{name: "older-peer-cert-new-label", want: agent.ReasonReplayed, src: peerAddrs,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				return issued(asPeer, olderThanPeer(t, f))(t, f, a)
			}},
		// Malicious updates under the peer's label.
		{name: "peer-label-other-ca", want: certs.ReasonUntrusted, src: peerAddrs, label: peerLabel,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				p := f.legitProfile(t, a)
				asPeer(f, &p)
				b, _ := other.IssueMachine(t, p)
				return wire.Peer{Bundle: b.Wire()}
			}},
		{name: "peer-label-expired", want: certs.ReasonExpired, src: peerAddrs, label: peerLabel,
			peer: issued(asPeer, testca.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)))},
		{name: "peer-label-swapped-key", want: certs.ReasonUntrusted, src: peerAddrs, label: peerLabel, peer: swappedKey},
		{name: "peer-label-truncated-der", want: certs.ReasonMalformed, src: peerAddrs, label: peerLabel,
			peer: func(_ *testing.T, f *fixture, _ *attacker) wire.Peer {
				w := f.Peer.Conn.Publish.Bundle
				w.Machine = w.Machine[:len(w.Machine)/2]
				return wire.Peer{Bundle: w}
			}},
		// A legitimately issued bundle, with AllowedIPs and addresses the
		// coordinator adds to the event: the victim must take them from
		// the certificate only, so the attacker cannot send from the
		// peer's address.
		{name: "allowed-ips-beyond-certificate", src: peerAddrs, keyConfigured: true,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				p := f.legitProfile(t, a)
				p.Addresses = f.freshAddrs()
				b, key := f.PKI.IssueMachine(t, p)
				return wire.Peer{Bundle: b.Wire(), Advertisement: signAdvert(t, key, p.DeviceID, p.WireGuardKey, time.Now(), a.Endpoint())}
			},
			line: func(t *testing.T, ev *wire.Event) []byte {
				raw, err := json.Marshal(ev)
				if err != nil {
					t.Fatal(err)
				}
				var m map[string]any
				if err := json.Unmarshal(raw, &m); err != nil {
					t.Fatal(err)
				}
				all := []string{"0.0.0.0/0", "::/0"}
				peer := m["peer"].(map[string]any)
				for _, k := range []string{"allowed_ips", "allowedIPs", "AllowedIPs", "addresses", "Addresses"} {
					peer[k] = all
					m[k] = all
				}
				out, err := json.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}},
	})
	checkPeerUnharmed(t, f)
}

// checkPeerUnharmed checks that the legitimate peer is still verified and
// configured exactly as its certificate says, and still gets through.
func checkPeerUnharmed(t *testing.T, f *fixture) {
	t.Helper()
	st := waitStatus(t, f.Victim, "status", func(*agent.Status) bool { return true })
	ps, ok := peerOf(st, f.Peer.Self.DeviceID)
	if !ok {
		t.Fatalf("the legitimate peer is no longer a verified peer; status %s", asJSON(st))
	}
	if ps.WireGuardKey != f.Peer.Self.WireGuardKey || !slices.Equal(ps.Addresses, f.Peer.Self.Addresses) {
		t.Errorf("the legitimate peer changed: %+v", ps)
	}
	f.peerReaches(t)
}
