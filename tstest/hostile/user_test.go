package hostile_test

// Forged user certificates. The hostile coordinator relays the legitimate
// peer's real machine bundle with a user certificate attached that claims
// a person for it: another device's (real, CA-issued), one for another
// key, one from another CA, an expired one. A forged user certificate must
// buy the coordinator no more than stripping the user certificate does:
// the peer stays configured exactly as its machine certificate says and
// its traffic still arrives, the victim shows it with no user (User nil,
// Name the bare hostname) and UserRejected saying why. Before every
// forgery a correctly issued user certificate is relayed and shown, so
// each forgery also checks that the agent never keeps the user of an
// older bundle when the newer bundle's user certificate is forged. Also:
// the peer's real user certificate moved onto another device, a user
// certificate that does not parse, and an older genuine user certificate
// of the same device replayed after a newer one.

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

const goodEmail = "alice@example.com"

var goodGroups = []certs.Group{"eng", "ops"}

// userAttack is one user certificate the coordinator attaches to the
// peer's real machine bundle.
type userAttack struct {
	name string
	// bundle returns the peer's real bundle with the forged user
	// certificate attached.
	bundle func(t *testing.T) certs.WireBundle
	want   certs.Reason // the user-* reason the victim must show
}

// withUser is b (the peer's bundle with a forged user certificate, and
// the intermediates IssueUser may have added) with the machine
// certificate's DER exactly as the peer published it in real.
func withUser(real certs.WireBundle, b certs.Bundle) certs.WireBundle {
	w := b.Wire()
	w.Machine = real.Machine
	return w
}

func TestForgedUserCertificates(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	real := f.Peer.Conn.Publish.Bundle
	peerBundle, err := certs.ParseBundle(real)
	if err != nil {
		t.Fatal(err)
	}
	if peerBundle.User != nil {
		t.Fatal("the peer published a user certificate; the test assumes none")
	}
	victimBundle, err := certs.ParseBundle(f.Victim.Conn.Publish.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	label := peerLabel(f)
	other := testca.New(t, trustDomain, f.Overlays...)
	now := time.Now()
	// Another device the real CA enrolled (say, one the attacker holds),
	// and a user certificate the CA really issued for it.
	laptopProfile := f.profile(t, "laptop", testca.RandomWireGuardKey(t))
	laptop, laptopKey := f.PKI.IssueMachine(t, laptopProfile)
	laptopUser := f.PKI.IssueUser(t, laptop, testca.WithEmail("mallory@example.com"))

	good := f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail), testca.WithGroups(string(goodGroups[0]), string(goodGroups[1])))

	stop := watchDevicePeer(f)
	relayPeer := func(t *testing.T, w certs.WireBundle) *agent.Status {
		t.Helper()
		p := f.Peer.AsPeer()
		p.Label, p.Bundle = label, w
		send(t, f.Victim.Conn, upsert(p))
		return f.sync(t)
	}
	relayGood := func(t *testing.T) {
		t.Helper()
		st := relayPeer(t, good.Wire())
		checkPeerUser(t, f, st, label, peerBundle, "")
	}

	t.Run("control-correct-user-certificate", func(t *testing.T) {
		relayGood(t)
		f.peerReaches(t)
	})
	if t.Failed() {
		t.FailNow() // without an accepted user the negative cases prove nothing
	}

	attacks := []userAttack{
		{name: "other-device-user", want: certs.ReasonUserDeviceMismatch,
			bundle: func(*testing.T) certs.WireBundle { return withUser(real, attachUser(peerBundle, laptopUser)) }},
		{name: "victim-user", want: certs.ReasonUserDeviceMismatch,
			bundle: func(t *testing.T) certs.WireBundle {
				return withUser(real, attachUser(peerBundle, f.PKI.IssueUser(t, victimBundle, testca.WithEmail(goodEmail))))
			}},
		{name: "bound-to-other-device-with-peer-key", want: certs.ReasonUserDeviceMismatch,
			bundle: func(t *testing.T) certs.WireBundle {
				return withUser(real, f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail), testca.WithBoundDevice(laptopProfile.DeviceID)))
			}},
		{name: "other-subject-key", want: certs.ReasonUserKeyMismatch,
			bundle: func(t *testing.T) certs.WireBundle {
				k, err := certs.NewKey()
				if err != nil {
					t.Fatal(err)
				}
				return withUser(real, f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail), testca.WithDeviceKey(k)))
			}},
		{name: "other-device-key", want: certs.ReasonUserKeyMismatch,
			bundle: func(t *testing.T) certs.WireBundle {
				return withUser(real, f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail), testca.WithDeviceKey(laptopKey)))
			}},
		{name: "other-ca", want: certs.ReasonUserUntrusted,
			bundle: func(t *testing.T) certs.WireBundle {
				return withUser(real, other.IssueUser(t, peerBundle, testca.WithEmail(goodEmail)))
			}},
		{name: "other-ca-with-real-intermediate", want: certs.ReasonUserUntrusted,
			bundle: func(t *testing.T) certs.WireBundle {
				return withUser(real, other.IssueUser(t, peerBundle, testca.WithEmail(goodEmail),
					testca.WithIntermediates(f.PKI.Intermediate().Cert)))
			}},
		{name: "self-signed", want: certs.ReasonUserUntrusted,
			bundle: func(t *testing.T) certs.WireBundle {
				return withUser(real, f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail), testca.WithSelfSigned()))
			}},
		{name: "signed-by-a-leaf", want: certs.ReasonUserUntrusted,
			bundle: func(t *testing.T) certs.WireBundle {
				// The attacker holds the laptop's device key and signs
				// with its machine certificate.
				return withUser(real, f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail),
					testca.WithIssuer(&certs.KeyPair{Cert: laptop.Machine, Key: laptopKey}),
					testca.WithIntermediates(laptop.Machine, f.PKI.Intermediate().Cert)))
			}},
		{name: "expired", want: certs.ReasonUserExpired,
			bundle: func(t *testing.T) certs.WireBundle {
				return withUser(real, f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail),
					testca.WithValidity(now.Add(-48*time.Hour), now.Add(-time.Hour))))
			}},
		{name: "not-yet-valid", want: certs.ReasonUserNotYetValid,
			bundle: func(t *testing.T) certs.WireBundle {
				return withUser(real, f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail),
					testca.WithValidity(now.Add(time.Hour), now.Add(13*time.Hour))))
			}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			relayGood(t)
			st := relayPeer(t, a.bundle(t))
			checkPeerUser(t, f, st, label, peerBundle, a.want)
			f.peerReaches(t)
		})
	}

	// Stripping the user certificate (what a logout publishes, and what
	// any relay can do) drops the user too, with nothing to explain.
	t.Run("stripped", func(t *testing.T) {
		relayGood(t)
		st := relayPeer(t, real)
		if r, ok := rejectionOf(st, label); ok {
			t.Errorf("the victim refused the bare machine bundle: %s: %s", r.Reason, r.Error)
		}
		ps := checkMachineUnchanged(t, f, st, peerBundle)
		if ps.User != nil || ps.UserRejected != "" || ps.Name != string(f.Peer.Self.Hostname) {
			t.Errorf("after the user certificate was stripped the peer shows user %+v, user_rejected %q, name %q; want no user, no rejection, name %q",
				ps.User, ps.UserRejected, ps.Name, f.Peer.Self.Hostname)
		}
	})

	// The peer's real user certificate moved onto another device's real
	// machine certificate: the coordinator tries to make the laptop appear
	// as alice.
	t.Run("user-moved-to-other-device", func(t *testing.T) {
		const label = "stolen-user"
		b := laptop
		b.User = good.User
		send(t, f.Victim.Conn, upsert(wire.Peer{Label: label, Bundle: b.Wire()}))
		st := f.sync(t)
		checkPeerUser(t, f, st, label, laptop, certs.ReasonUserDeviceMismatch)
		send(t, f.Victim.Conn, &wire.Event{Type: wire.EventRemove, Label: label})
		f.sync(t)
	})

	// A user certificate that is not DER at all. ParseBundle (by design,
	// see its doc) refuses the whole bundle as malformed, so the update
	// is refused and the victim keeps what it had verified before: the
	// coordinator gains nothing it could not get by withholding the
	// update. What must hold: the peer stays, unchanged, and no user
	// other than the one of the genuine, still valid certificate the
	// victim accepted before is shown.
	t.Run("unparseable-user-der", func(t *testing.T) {
		relayGood(t)
		w := good.Wire()
		w.User = w.User[:len(w.User)/2]
		st := relayPeer(t, w)
		ps := checkMachineUnchanged(t, f, st, peerBundle)
		if r, ok := rejectionOf(st, label); ok {
			t.Logf("update refused as a whole: %s: %s", r.Reason, r.Error)
		}
		switch {
		case ps.User == nil:
			t.Logf("the peer shows no user (user_rejected %q)", ps.UserRejected)
		case ps.User.Email != goodEmail || !ps.User.NotAfter.Equal(good.User.NotAfter):
			t.Errorf("the peer shows user %+v, which is not the previously accepted one", ps.User)
		default:
			t.Logf("the previously accepted (genuine, still valid) user is kept: %s", ps.Name)
		}
		f.peerReaches(t)
		relayPeer(t, real) // clear the refusal for what follows
	})

	// Bob logs in on the peer after Alice (his certificate is newer);
	// the coordinator re-attaches Alice's older, genuine, still valid user
	// certificate to the peer's machine bundle, to have the peer's traffic
	// judged as Alice's (her groups) rather than Bob's. Each certificate
	// is correctly bound to the peer's device, so Verify accepts either;
	// only the agent, remembering the newest user certificate it saw for
	// the device (as it does for machine certificates), can refuse it.
	t.Run("older-user-replayed", func(t *testing.T) {
		alice := f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail), testca.WithGroups("admins"),
			testca.WithValidity(time.Now().Add(-30*time.Second), now.Add(10*time.Hour)))
		bob := f.PKI.IssueUser(t, peerBundle, testca.WithEmail("bob@example.com"), testca.WithGroups("eng"),
			testca.WithValidity(time.Now().Add(-20*time.Second), now.Add(11*time.Hour)))
		st := relayPeer(t, alice.Wire())
		if ps := checkMachineUnchanged(t, f, st, peerBundle); ps.User == nil || ps.User.Email != goodEmail {
			t.Fatalf("alice's certificate was not accepted: %+v (user_rejected %q)", ps.User, ps.UserRejected)
		}
		st = relayPeer(t, bob.Wire())
		if ps := checkMachineUnchanged(t, f, st, peerBundle); ps.User == nil || ps.User.Email != "bob@example.com" {
			t.Fatalf("bob's certificate was not accepted: %+v (user_rejected %q)", ps.User, ps.UserRejected)
		}
		st = relayPeer(t, alice.Wire())
		ps := checkMachineUnchanged(t, f, st, peerBundle)
		f.peerReaches(t)
		if ps.User != nil || !strings.Contains(ps.UserRejected, "user-replayed") {
			t.Errorf("after the replay of alice's older certificate the peer shows user %+v (user_rejected %q), want no user, user-replayed", ps.User, ps.UserRejected)
		}
		t.Logf("replay of the older user certificate: user %+v, user_rejected %q, refusal %v", ps.User, ps.UserRejected, asJSON(st.Rejected))
	})
	relayPeer(t, real)

	if missing, samples := stop(); missing > 0 {
		t.Errorf("the legitimate peer was missing from the victim's WireGuard device in %d of %d samples", missing, samples)
	}
	checkPeerUnharmed(t, f)
	checkDeviceMatchesStatus(t, f.Victim)
}

// attachUser is machine with u's user certificate and its intermediates
// added.
func attachUser(machine, u certs.Bundle) certs.Bundle {
	b := machine
	b.Intermediates = slices.Clone(machine.Intermediates)
	for _, c := range u.Intermediates {
		if !slices.ContainsFunc(b.Intermediates, c.Equal) {
			b.Intermediates = append(b.Intermediates, c)
		}
	}
	b.User = u.User
	return b
}

// checkMachineUnchanged checks that the device of machine is a verified
// peer of the victim, exactly as its machine certificate says. It returns
// the peer's status.
func checkMachineUnchanged(t *testing.T, f *fixture, st *agent.Status, machine certs.Bundle) agent.PeerStatus {
	t.Helper()
	// What the machine certificate alone proves, against the roots the
	// victim pins (the CA's).
	want, err := certs.Verify(certs.Bundle{Machine: machine.Machine, Intermediates: machine.Intermediates}, f.CA.Roots(), nil, time.Now())
	if err != nil {
		t.Fatalf("the machine bundle does not verify: %v", err)
	}
	ps, ok := peerOf(st, want.DeviceID)
	if !ok {
		t.Fatalf("device %s is not a verified peer of the victim; status %s", want.DeviceID, asJSON(st))
	}
	if !ps.Verified || ps.Hostname != want.Hostname || ps.WireGuardKey != want.WireGuardKey ||
		!slices.Equal(ps.Addresses, want.Addresses) || !ps.CertNotAfter.Equal(want.NotAfter) {
		t.Errorf("the machine identity changed: status %+v, certificate %+v", ps, want)
	}
	if len(ps.Tags) != 0 {
		t.Fatalf("the peer has tags %v; the test expects none", ps.Tags)
	}
	return ps
}

// checkPeerUser checks the device of machine in the victim's status: the
// machine identity as its certificate says and, if want is "", the good
// user (alice, with her groups); else no user, the user rejected for want,
// and the bare hostname as its name.
func checkPeerUser(t *testing.T, f *fixture, st *agent.Status, label string, machine certs.Bundle, want certs.Reason) {
	t.Helper()
	if r, ok := rejectionOf(st, label); ok {
		t.Errorf("the victim refused %q (%s: %s); a user certificate must never cost the machine its place", label, r.Reason, r.Error)
	}
	ps := checkMachineUnchanged(t, f, st, machine)
	if want == "" {
		if ps.User == nil {
			t.Fatalf("the correctly issued user certificate was not accepted: user_rejected %q", ps.UserRejected)
		}
		if ps.User.Email != goodEmail || !slices.Equal(ps.User.Groups, goodGroups) || ps.UserRejected != "" {
			t.Errorf("the peer shows user %+v (user_rejected %q), want %s in %v", ps.User, ps.UserRejected, goodEmail, goodGroups)
		}
		if wantName := goodEmail + " on " + string(ps.Hostname); ps.Name != wantName {
			t.Errorf("the peer is named %q, want %q", ps.Name, wantName)
		}
		return
	}
	if ps.User != nil {
		t.Errorf("the forged user certificate left user %+v on the peer (name %q); want none", ps.User, ps.Name)
	}
	if !strings.Contains(ps.UserRejected, "("+string(want)+")") {
		t.Errorf("user_rejected is %q, want reason %q", ps.UserRejected, want)
	} else {
		t.Logf("user rejected: %s", ps.UserRejected)
	}
	if ps.Name != string(ps.Hostname) {
		t.Errorf("the peer is named %q, want the bare hostname %q", ps.Name, ps.Hostname)
	}
}
