package certs_test

import (
	"bytes"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testca"
)

// fuzzSeeds are machine certificates worth mutating: a good one and a few
// that Verify rejects for different reasons.
func fuzzSeeds(f *testing.F, ca *testca.CA) [][]byte {
	good, _ := goodSeed(f, ca)
	p := ca.NewProfile(f, "seed")
	p.Tags = []certs.Tag{"db"}
	self, _ := ca.IssueMachineWire(f, p, testca.WithSelfSigned())
	short, _ := ca.IssueMachineWire(f, p, testca.WithWireGuardKeyBytes(bytes.Repeat([]byte{1}, 31)))
	dup, _ := ca.IssueMachineWire(f, p, testca.WithDuplicateExtension(certs.OIDTags))
	return [][]byte{good.Machine.Raw, self.Machine, short.Machine, dup.Machine, good.Machine.Raw[:len(good.Machine.Raw)/2], nil, []byte("garbage")}
}

// goodSeed is a machine bundle the user seeds are bound to, and a valid
// user certificate for it.
func goodSeed(f *testing.F, ca *testca.CA) (certs.Bundle, []byte) {
	p := ca.NewProfile(f, "seed")
	p.Tags = []certs.Tag{"db"}
	b, _ := ca.IssueMachine(f, p)
	return b, ca.IssueUser(f, b, testca.WithGroups("eng", "ops")).User.Raw
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
	machine, _ := goodSeed(f, ca)
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

// FuzzVerify feeds arbitrary DER as the machine certificate and the user
// certificate (none if empty), with the CA's real intermediate. Verify must
// not panic, must reject with a typed reason, may accept only what a
// certmesh CA signed, and must decide about the machine exactly as it does
// without the user certificate.
func FuzzVerify(f *testing.F) {
	ca := testca.New(f, td)
	for _, s := range fuzzSeeds(f, ca) {
		f.Add(s, []byte(nil))
	}
	machine, _ := goodSeed(f, ca)
	for _, u := range userFuzzSeeds(f, ca, machine) {
		f.Add(machine.Machine.Raw, u)
	}
	inter := ca.Intermediate().Cert
	now := time.Now()
	f.Fuzz(func(t *testing.T, machine, user []byte) {
		w := certs.WireBundle{Machine: machine, Intermediates: [][]byte{inter.Raw}}
		if len(user) > 0 {
			w.User = user
		}
		b, err := certs.ParseBundle(w)
		if err != nil {
			return
		}
		id, err := certs.Verify(b, ca.Roots(), nil, now)
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
		}
	})
}

// FuzzVerifyCRL feeds arbitrary DER to VerifyCRL, with the CA's
// intermediate and a machine certificate (a leaf, which a hostile
// coordinator may offer as the issuer) as the intermediates, once holding
// no CRL and once holding CRL 10. VerifyCRL must not panic, must refuse
// with a typed CRL reason, and may accept only a CRL the intermediate
// signed, with a number above the one held (or the held one unchanged).
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
	heldCRL, err := certs.VerifyCRL(held, ca.Roots(), []*x509.Certificate{inter.Cert}, now, nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][]byte{
		held,
		ca.IssueCRL(f, 11, this, next),
		ca.IssueCRL(f, 9, this, next, entries...),
		ca.IssueCRL(f, 10, this, next),
		ca.IssueCRL(f, 12, now.Add(time.Hour), now.Add(2*time.Hour)),
		testca.SignCRL(f, leaf.Machine, leafKey, testca.CRLTemplate(11, this, next)),
		testca.SignCRL(f, inter.Cert, leafKey, testca.CRLTemplate(11, this, next)),
		other.IssueCRL(f, 11, this, next),
		held[:len(held)/2],
		nil,
		[]byte("garbage"),
	} {
		f.Add(s)
	}
	inters := []*x509.Certificate{leaf.Machine, inter.Cert}
	f.Fuzz(func(t *testing.T, der []byte) {
		for _, current := range []*certs.CRL{nil, heldCRL} {
			crl, err := certs.VerifyCRL(der, ca.Roots(), inters, now, current)
			if err != nil {
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
