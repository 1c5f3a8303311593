package certs_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testca"
)

// fuzzSeeds are machine certificates worth mutating: a good one and a few
// that Verify rejects for different reasons.
func fuzzSeeds(f *testing.F, ca *testca.CA) [][]byte {
	p := ca.NewProfile(f, "seed")
	p.Tags = []certs.Tag{"db"}
	good, _ := ca.IssueMachineWire(f, p)
	self, _ := ca.IssueMachineWire(f, p, testca.WithSelfSigned())
	short, _ := ca.IssueMachineWire(f, p, testca.WithWireGuardKeyBytes(bytes.Repeat([]byte{1}, 31)))
	dup, _ := ca.IssueMachineWire(f, p, testca.WithDuplicateExtension(certs.OIDTags))
	return [][]byte{good.Machine, self.Machine, short.Machine, dup.Machine, good.Machine[:len(good.Machine)/2], nil, []byte("garbage")}
}

// The fuzz targets run only their seeds in a normal test run. To fuzz:
//
//	go test ./certs -run XXX -fuzz FuzzVerify -fuzztime 20s -fuzzminimizetime 100x
//
// Without -fuzzminimizetime, minimizing each new ~700-byte input (up to 60 s
// by default) takes nearly all of a short -fuzztime.

// FuzzParseBundle: no input makes ParseBundle (or Verify after it) panic,
// and every failure is a typed malformed rejection.
func FuzzParseBundle(f *testing.F) {
	ca := testca.New(f, td)
	inter := ca.Intermediate().Cert.Raw
	for _, s := range fuzzSeeds(f, ca) {
		f.Add(s, inter)
	}
	f.Add([]byte{0x30, 0x80}, []byte{0x30, 0x00})
	now := time.Now()
	f.Fuzz(func(t *testing.T, machine, intermediate []byte) {
		b, err := certs.ParseBundle(certs.WireBundle{Machine: machine, Intermediates: [][]byte{intermediate}})
		if err != nil {
			if certs.ReasonOf(err) != certs.ReasonMalformed {
				t.Fatalf("ParseBundle error %v is not a malformed rejection", err)
			}
			return
		}
		if b.Machine == nil || len(b.Intermediates) != 1 {
			t.Fatalf("ParseBundle returned %d intermediates, machine %v", len(b.Intermediates), b.Machine != nil)
		}
		if _, err := certs.Verify(b, ca.Roots(), now); err != nil && certs.ReasonOf(err) == "" {
			t.Fatalf("Verify error %v has no reason", err)
		}
	})
}

// FuzzVerify feeds arbitrary DER as the machine certificate, with the CA's
// real intermediate. Verify must not panic, must reject with a typed reason,
// and may accept only what a certmesh CA signed.
func FuzzVerify(f *testing.F) {
	ca := testca.New(f, td)
	for _, s := range fuzzSeeds(f, ca) {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, machine []byte) {
		b, err := certs.ParseBundle(certs.WireBundle{Machine: machine, Intermediates: [][]byte{ca.Intermediate().Cert.Raw}})
		if err != nil {
			return
		}
		id, err := certs.Verify(b, ca.Roots(), now)
		if err != nil {
			if certs.ReasonOf(err) == "" {
				t.Fatalf("Verify error %v has no reason", err)
			}
			return
		}
		if b.Machine.CheckSignatureFrom(ca.Intermediate().Cert) != nil {
			t.Fatal("Verify accepted a certificate the intermediate did not sign")
		}
		if id.WireGuardKey.IsZero() || len(id.Addresses) == 0 || id.DeviceID == "" {
			t.Fatalf("accepted an incomplete identity %+v", id)
		}
	})
}
