package certs_test

import (
	"bytes"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/fuzzedit"
	"github.com/certmesh/certmesh/tstest/testca"
)

// fuzzSeeds are machine certificates worth mutating: a good one and a few
// that Verify rejects for different reasons.
func fuzzSeeds(f *testing.F, ca *testca.CA) [][]byte {
	good := goodSeed(f, ca)
	p := ca.NewProfile(f, "seed")
	p.Tags = []certs.Tag{"db"}
	self, _ := ca.IssueMachineWire(f, p, testca.WithSelfSigned())
	short, _ := ca.IssueMachineWire(f, p, testca.WithWireGuardKeyBytes(bytes.Repeat([]byte{1}, 31)))
	dup, _ := ca.IssueMachineWire(f, p, testca.WithDuplicateExtension(certs.OIDTags))
	return [][]byte{good.Machine.Raw, self.Machine, short.Machine, dup.Machine, good.Machine.Raw[:len(good.Machine.Raw)/2], nil, []byte("garbage")}
}

// goodSeed is a valid machine bundle, the one the user seeds are bound to.
func goodSeed(f *testing.F, ca *testca.CA) certs.Bundle {
	p := ca.NewProfile(f, "seed")
	p.Tags = []certs.Tag{"db"}
	b, _ := ca.IssueMachine(f, p)
	return b
}

// userFuzzSeeds are user certificates for machine worth mutating: a good
// one and some that Verify rejects for different reasons.
func userFuzzSeeds(f *testing.F, ca *testca.CA, machine certs.Bundle) [][]byte {
	other := testca.New(f, td)
	key, err := certs.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	user := func(opts ...testca.Option) []byte { return ca.IssueUserWire(f, machine, opts...).User }
	good := user(testca.WithGroups("eng"))
	return [][]byte{
		good,
		user(testca.WithValidity(now.Add(-2*time.Hour), now.Add(-time.Hour))),
		user(testca.WithDeviceKey(key)),
		user(testca.WithBoundDevice(testca.NewDeviceID(f))),
		user(testca.WithIssuer(other.Intermediate()), testca.WithIntermediates(ca.Intermediate().Cert)),
		user(testca.WithDuplicateExtension(certs.OIDGroups), testca.WithGroups("eng")),
		good[:len(good)/2],
	}
}

// The fuzz targets run only their seeds in a normal test run. To fuzz:
//
//	go test ./certs -run XXX -fuzz FuzzVerify -fuzztime 20s -fuzzminimizetime 100x
//
// Without -fuzzminimizetime, minimizing each new ~700-byte input (up to 60 s
// by default) takes nearly all of a short -fuzztime.

// FuzzParseBundle: no input makes ParseBundle (or Verify after it) panic,
// and every failure is a typed malformed rejection. An empty user input
// means a bundle without a user certificate.
func FuzzParseBundle(f *testing.F) {
	ca := testca.New(f, td)
	inter := ca.Intermediate().Cert.Raw
	for _, s := range fuzzSeeds(f, ca) {
		f.Add(s, inter, []byte(nil))
	}
	machine := goodSeed(f, ca)
	for _, u := range userFuzzSeeds(f, ca, machine) {
		f.Add(machine.Machine.Raw, inter, u)
	}
	f.Add([]byte{0x30, 0x80}, []byte{0x30, 0x00}, []byte{0x30, 0x00})
	now := time.Now()
	f.Fuzz(func(t *testing.T, machine, intermediate, user []byte) {
		w := certs.WireBundle{Machine: machine, Intermediates: [][]byte{intermediate}}
		if len(user) > 0 {
			w.User = user
		}
		b, err := certs.ParseBundle(w)
		if err != nil {
			if certs.ReasonOf(err) != certs.ReasonMalformed {
				t.Fatalf("ParseBundle error %v is not a malformed rejection", err)
			}
			return
		}
		if b.Machine == nil || len(b.Intermediates) != 1 || (b.User != nil) != (len(user) > 0) {
			t.Fatalf("ParseBundle returned %d intermediates, machine %v, user %v", len(b.Intermediates), b.Machine != nil, b.User != nil)
		}
		id, err := certs.Verify(b, ca.Roots(), nil, now)
		if err != nil && certs.ReasonOf(err) == "" {
			t.Fatalf("Verify error %v has no reason", err)
		}
		if id.UserRejected != nil && !strings.HasPrefix(string(id.UserRejected.Reason), "user-") {
			t.Fatalf("user rejection %v has no user reason", id.UserRejected)
		}
	})
}

// FuzzVerify edits this process's genuine machine certificate and one of
// its user certificates (userFuzzSeeds, or none) and verifies the bundle
// with the CA's real intermediate. Verify must not panic, must reject with
// a typed reason, may accept only what a certmesh CA signed, and must
// decide about the machine exactly as it does without the user
// certificate. The genuine machine certificate, alone or with the genuine
// user certificate, must be accepted (with the user).
//
// Every process (each fuzz worker runs this set-up again) makes a PKI of
// its own, so the fuzzer mutates edit lists (internal/fuzzedit) applied to
// this process's certificates, not the certificates' bytes: seeds holding
// another process's certificates would never verify in the workers.
func FuzzVerify(f *testing.F) {
	ca := testca.New(f, td)
	machine := goodSeed(f, ca)
	users := append(userFuzzSeeds(f, ca, machine), nil) // users[0] is the good one; nil: no user certificate
	inter := ca.Intermediate().Cert
	now := time.Now()
	genuine := machine.Machine.Raw
	b, err := certs.ParseBundle(certs.WireBundle{Machine: genuine, Intermediates: [][]byte{inter.Raw}, User: users[0]})
	if err != nil {
		f.Fatal(err)
	}
	if id, err := certs.Verify(b, ca.Roots(), nil, now); err != nil || id.User == nil {
		f.Fatalf("the genuine bundle is not accepted with its user: %v, user rejected: %v", err, id.UserRejected)
	}

	for i := range users {
		f.Add([]byte(nil), uint8(i), []byte(nil))
	}
	f.Add(fuzzedit.Xor(len(genuine)/2, 1), uint8(0), []byte(nil))
	f.Add(fuzzedit.Xor(len(genuine)-1, 0x80), uint8(0), []byte(nil))
	f.Add(fuzzedit.Cut(len(genuine)/2), uint8(len(users)-1), []byte(nil))
	f.Add(fuzzedit.Cut(len(genuine)-1), uint8(0), []byte(nil))
	f.Add(fuzzedit.Insert(len(genuine), 0), uint8(0), []byte(nil))
	f.Add([]byte(nil), uint8(0), fuzzedit.Xor(len(users[0])/2, 1))
	f.Add([]byte(nil), uint8(0), fuzzedit.Xor(len(users[0])-1, 0x80))
	f.Add([]byte(nil), uint8(0), fuzzedit.Cut(len(users[0])-1))
	f.Add([]byte(nil), uint8(0), fuzzedit.Insert(len(users[0]), 0))
	f.Add([]byte(nil), uint8(len(users)-1), append(fuzzedit.Insert(0, 0x30), fuzzedit.Insert(1, 0x00)...))
	f.Fuzz(func(t *testing.T, machineEdits []byte, userSel uint8, userEdits []byte) {
		machineDER := fuzzedit.Apply(genuine, machineEdits)
		userDER := fuzzedit.Apply(users[int(userSel)%len(users)], userEdits)
		// The genuine machine certificate, alone or with the good user
		// certificate: the fixture every other input is an edit of.
		want := bytes.Equal(machineDER, genuine) && (len(userDER) == 0 || bytes.Equal(userDER, users[0]))
		w := certs.WireBundle{Machine: machineDER, Intermediates: [][]byte{inter.Raw}}
		if len(userDER) > 0 {
			w.User = userDER
		}
		b, err := certs.ParseBundle(w)
		if err != nil {
			if want {
				t.Fatalf("the genuine bundle does not parse: %v", err)
			}
			return
		}
		id, err := certs.Verify(b, ca.Roots(), nil, now)
		if want && (err != nil || (b.User != nil) != (id.User != nil)) {
			t.Fatalf("the genuine bundle is not accepted (with its user): %v, user rejected: %v", err, id.UserRejected)
		}
		alone := b
		alone.User = nil
		machineOnly, errAlone := certs.Verify(alone, ca.Roots(), nil, now)
		if certs.ReasonOf(err) != certs.ReasonOf(errAlone) || id.DeviceID != machineOnly.DeviceID || id.WireGuardKey != machineOnly.WireGuardKey {
			t.Fatalf("the user certificate changed the machine verdict: %v / %v, %+v / %+v", err, errAlone, id, machineOnly)
		}
		if err != nil {
			if certs.ReasonOf(err) == "" {
				t.Fatalf("Verify error %v has no reason", err)
			}
			if id.User != nil || id.UserRejected != nil {
				t.Fatal("a rejected bundle has a user verdict")
			}
			return
		}
		if b.Machine.CheckSignatureFrom(inter) != nil {
			t.Fatal("Verify accepted a certificate the intermediate did not sign")
		}
		if id.WireGuardKey.IsZero() || len(id.Addresses) == 0 || id.DeviceID == "" {
			t.Fatalf("accepted an incomplete identity %+v", id)
		}
		switch {
		case b.User == nil && (id.User != nil || id.UserRejected != nil):
			t.Fatal("a user verdict without a user certificate")
		case b.User != nil && (id.User == nil) == (id.UserRejected == nil):
			t.Fatalf("user %+v and rejection %v: want exactly one", id.User, id.UserRejected)
		case id.UserRejected != nil && !strings.HasPrefix(string(id.UserRejected.Reason), "user-"):
			t.Fatalf("user rejection %v has no user reason", id.UserRejected)
		case id.User != nil:
			if b.User.CheckSignatureFrom(inter) != nil {
				t.Fatal("Verify accepted a user certificate the intermediate did not sign")
			}
			if !bytes.Equal(b.User.RawSubjectPublicKeyInfo, b.Machine.RawSubjectPublicKeyInfo) {
				t.Fatal("Verify accepted a user certificate for another key")
			}
			if id.User.UserID == "" || id.User.Email == "" {
				t.Fatalf("accepted an incomplete user %+v", id.User)
			}
			for _, bad := range users[1:] {
				if len(bad) > 0 && bytes.Equal(userDER, bad) {
					t.Fatal("Verify accepted one of the user certificates it must reject")
				}
			}
		}
	})
}

// FuzzVerifyCRL edits one of this process's CRLs (the one held, newer,
// older, another with the held number, one from the future, CRLs signed by
// a leaf, by a wrong key, by another CA, or none) and gives it to
// VerifyCRL, with the CA's intermediate and a machine certificate (a leaf,
// which a hostile coordinator may offer as the issuer) as the
// intermediates, once holding no CRL and once holding CRL 10. VerifyCRL
// must not panic, must refuse with a typed CRL reason, and may accept only
// a CRL the intermediate signed, with a number above the one held (or the
// held one unchanged). The genuine held CRL and the genuine newer CRL must
// be accepted. As in FuzzVerify, the fuzzer mutates edit lists applied to
// this process's CRLs, whose keys differ from one process to the next.
//
//	go test ./certs -run XXX -fuzz FuzzVerifyCRL -fuzztime 20s -fuzzminimizetime 100x
func FuzzVerifyCRL(f *testing.F) {
	ca := testca.New(f, td)
	inter := ca.Intermediate()
	leaf, leafKey := ca.IssueMachine(f, ca.NewProfile(f, "leaf"))
	other := testca.New(f, td)
	now := time.Now()
	this, next := now.Add(-time.Minute), now.Add(5*time.Minute)
	entries := []certs.RevokedCert{
		testca.Revoked(leaf.Machine, certs.RevokeKeyCompromise),
		{Serial: big.NewInt(0x7f), RevokedAt: this, Reason: certs.RevokeSuperseded},
	}
	held := ca.IssueCRL(f, 10, this, next, entries...)
	newer := ca.IssueCRL(f, 11, this, next)
	crls := [][]byte{
		held,
		newer,
		ca.IssueCRL(f, 9, this, next, entries...),
		ca.IssueCRL(f, 10, this, next),
		ca.IssueCRL(f, 12, now.Add(time.Hour), now.Add(2*time.Hour)),
		testca.SignCRL(f, leaf.Machine, leafKey, testca.CRLTemplate(11, this, next)),
		testca.SignCRL(f, inter.Cert, leafKey, testca.CRLTemplate(11, this, next)),
		other.IssueCRL(f, 11, this, next),
		nil,
	}
	inters := []*x509.Certificate{leaf.Machine, inter.Cert}
	heldCRL, err := certs.VerifyCRL(held, ca.Roots(), inters, now, nil)
	if err != nil {
		f.Fatalf("the genuine CRL is refused: %v", err)
	}
	if crl, err := certs.VerifyCRL(newer, ca.Roots(), inters, now, heldCRL); err != nil || crl == heldCRL {
		f.Fatalf("the genuine newer CRL is refused: %v", err)
	}

	for i := range crls {
		f.Add(uint8(i), []byte(nil))
	}
	f.Add(uint8(0), fuzzedit.Xor(len(held)/2, 1))
	f.Add(uint8(0), fuzzedit.Xor(len(held)-1, 0x80))
	f.Add(uint8(0), fuzzedit.Cut(len(held)/2))
	f.Add(uint8(0), fuzzedit.Insert(len(held), 0))
	f.Add(uint8(1), fuzzedit.Xor(len(newer)/2, 1))
	f.Add(uint8(1), fuzzedit.Cut(len(newer)-1))
	f.Add(uint8(len(crls)-1), append(fuzzedit.Insert(0, 0x30), fuzzedit.Insert(1, 0x00)...))
	f.Fuzz(func(t *testing.T, sel uint8, edits []byte) {
		der := fuzzedit.Apply(crls[int(sel)%len(crls)], edits)
		want := bytes.Equal(der, held) || bytes.Equal(der, newer)
		for _, current := range []*certs.CRL{nil, heldCRL} {
			crl, err := certs.VerifyCRL(der, ca.Roots(), inters, now, current)
			if err != nil {
				if want {
					t.Fatalf("the genuine CRL is refused (holding %v): %v", current != nil, err)
				}
				if !strings.HasPrefix(string(certs.ReasonOf(err)), "crl-") || crl != nil {
					t.Fatalf("VerifyCRL = %v, %v: want a typed crl-* rejection and no CRL", crl, err)
				}
				continue
			}
			rl, perr := x509.ParseRevocationList(der)
			if perr != nil || rl.CheckSignatureFrom(inter.Cert) != nil {
				t.Fatalf("VerifyCRL accepted a CRL the intermediate did not sign (%v)", perr)
			}
			if current != nil {
				if crl == current {
					if crl.Number.Cmp(current.Number) != 0 {
						t.Fatal("no change with another number")
					}
					continue
				}
				if crl.Number.Cmp(current.Number) <= 0 {
					t.Fatalf("accepted CRL %s over the held %s", crl.Number, current.Number)
				}
			}
			if !bytes.Equal(crl.Raw, der) || crl.Number == nil || crl.Number.Sign() < 0 || crl.Issuer != inter.Cert || crl.NextUpdate.Before(crl.ThisUpdate) {
				t.Fatalf("accepted an inconsistent CRL %+v", crl)
			}
			for _, r := range crl.Revoked() {
				if !crl.IsRevoked(r.Serial) {
					t.Fatalf("serial %x listed but not revoked", r.Serial)
				}
			}
		}
	})
}
