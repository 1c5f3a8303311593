package certs_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

// utf8Seq is the DER of a SEQUENCE OF UTF8String, built without certs.
func utf8Seq(items ...string) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, s := range items {
			b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
		}
	})
	return b.BytesOrPanic()
}

// replaceOnce replaces the single occurrence of old in the machine
// certificate's DER, as a hostile coordinator relaying the bundle could.
func replaceOnce(t *testing.T, w certs.WireBundle, old, new []byte) certs.WireBundle {
	t.Helper()
	if n := bytes.Count(w.Machine, old); n != 1 {
		t.Fatalf("%x occurs %d times in the certificate", old, n)
	}
	w.Machine = bytes.Replace(w.Machine, old, new, 1)
	return w
}

func TestVerifyRejects(t *testing.T) {
	ca := testca.New(t, td)
	sameNames := testca.New(t, td) // another CA whose root and intermediate have our names
	foreign := testca.New(t, "other.example")
	foreignRoots, err := certs.NewRoots(td, foreign.Root().Cert) // pinned for td, but it is other.example's root
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// A time when the intermediate has expired but the root has not.
	later := now.Add(certs.IntermediateLifetime + 24*time.Hour)

	issueBy := func(c *testca.CA, opts ...testca.Option) func(*testing.T) certs.WireBundle {
		return func(t *testing.T) certs.WireBundle {
			w, _ := c.IssueMachineWire(t, c.NewProfile(t, "peer"), opts...)
			return w
		}
	}
	issue := func(opts ...testca.Option) func(*testing.T) certs.WireBundle { return issueBy(ca, opts...) }
	wire := func(w certs.WireBundle) func(*testing.T) certs.WireBundle {
		return func(*testing.T) certs.WireBundle { return w }
	}
	valid := issue()(t)
	deviceURI := func() string { return certs.DeviceURI(td, testca.NewDeviceID(t)).String() }
	leaf, leafKey := ca.IssueMachine(t, ca.NewProfile(t, "minter"))
	tooMany := certs.WireBundle{Machine: valid.Machine}
	for range certs.MaxBundleCerts {
		tooMany.Intermediates = append(tooMany.Intermediates, valid.Intermediates[0])
	}

	tests := []struct {
		name   string
		bundle func(*testing.T) certs.WireBundle
		at     time.Time    // zero: now
		roots  *certs.Roots // nil: ca.Roots()
		want   certs.Reason
	}{
		// Chain.
		{name: "issued by another trust domain's CA", bundle: issueBy(foreign), want: certs.ReasonUntrusted},
		{name: "issued by another CA with the same names", bundle: issueBy(sameNames), want: certs.ReasonUntrusted},
		{name: "our leaf bundled with a look-alike intermediate", bundle: issue(testca.WithIntermediates(sameNames.Intermediate().Cert)), want: certs.ReasonUntrusted},
		{name: "intermediate missing from the bundle", bundle: issue(testca.WithIntermediates()), want: certs.ReasonUntrusted},
		{name: "signed by a machine certificate", bundle: issue(testca.WithIssuer(&certs.KeyPair{Cert: leaf.Machine, Key: leafKey})), want: certs.ReasonUntrusted},
		{name: "self-signed leaf", bundle: issue(testca.WithSelfSigned()), want: certs.ReasonSelfSigned},
		{name: "self-signed leaf bundled with our intermediate", bundle: issue(testca.WithSelfSigned(), testca.WithIntermediates(ca.Intermediate().Cert)), want: certs.ReasonSelfSigned},
		{name: "WireGuard key swapped after signing", bundle: func(t *testing.T) certs.WireBundle {
			p := ca.NewProfile(t, "peer")
			w, _ := ca.IssueMachineWire(t, p)
			k := testca.RandomWireGuardKey(t)
			return replaceOnce(t, w, p.WireGuardKey[:], k[:])
		}, want: certs.ReasonUntrusted},
		{name: "IP SAN swapped after signing", bundle: func(t *testing.T) certs.WireBundle {
			p := ca.NewProfile(t, "peer")
			w, _ := ca.IssueMachineWire(t, p)
			ip := p.Addresses[0].As4()
			// GeneralName iPAddress: [7] IMPLICIT OCTET STRING.
			return replaceOnce(t, w, append([]byte{0x87, 4}, ip[:]...), []byte{0x87, 4, 100, 64, 0, 1})
		}, want: certs.ReasonUntrusted},
		// An expired CA of another PKI is untrusted, not expired.
		{name: "expired intermediate of another CA", bundle: issueBy(sameNames, testca.WithValidity(later.Add(-time.Hour), later.Add(time.Hour))), at: later, want: certs.ReasonUntrusted},

		// Validity.
		{name: "expired", bundle: issue(testca.WithValidity(now.Add(-48*time.Hour), now.Add(-24*time.Hour))), want: certs.ReasonExpired},
		{name: "verified after its lifetime", bundle: issue(), at: now.Add(testca.MachineLifetime + time.Minute), want: certs.ReasonExpired},
		{name: "not yet valid", bundle: issue(testca.WithValidity(now.Add(time.Hour), now.Add(25*time.Hour))), want: certs.ReasonNotYetValid},
		{name: "expired intermediate", bundle: issue(testca.WithValidity(later.Add(-time.Hour), later.Add(time.Hour))), at: later, want: certs.ReasonExpired},
		{name: "intermediate not yet valid", bundle: issue(testca.WithValidity(now.Add(-4*time.Hour), now.Add(time.Hour))), at: now.Add(-certs.LongLivedBackdate - time.Hour), want: certs.ReasonNotYetValid},

		// Name constraints of the intermediate.
		{name: "IPv4 SAN outside the overlay range", bundle: issue(testca.WithIPs(netip.MustParseAddr("10.1.2.3"))), want: certs.ReasonNameConstraints},
		{name: "IPv6 SAN outside the overlay range", bundle: issue(testca.WithIPs(netip.MustParseAddr("100.64.0.9"), netip.MustParseAddr("fd00::1"))), want: certs.ReasonNameConstraints},
		{name: "DNS SAN outside the trust domain", bundle: issue(testca.WithDNSNames("peer.evil.example")), want: certs.ReasonNameConstraints},
		{name: "DNS SAN in a look-alike domain", bundle: issue(testca.WithDNSNames("peer.corp.example.evil")), want: certs.ReasonNameConstraints},
		{name: "SPIFFE ID in another trust domain", bundle: issue(testca.WithURIs("spiffe://other.example/device/aaaaaaaaaaaaaaaa")), want: certs.ReasonNameConstraints},

		// Trust domain.
		{name: "SPIFFE ID in a sub-domain of the trust domain", bundle: issue(testca.WithURIs("spiffe://evil.corp.example/device/aaaaaaaaaaaaaaaa")), want: certs.ReasonWrongTrustDomain},
		{name: "SPIFFE ID with an upper-case trust domain", bundle: issue(testca.WithURIs("spiffe://CORP.example/device/aaaaaaaaaaaaaaaa")), want: certs.ReasonWrongTrustDomain},
		{name: "root pinned for our trust domain issues for another", bundle: issueBy(foreign), roots: foreignRoots, want: certs.ReasonWrongTrustDomain},

		// Profile.
		{name: "no URI SAN", bundle: issue(testca.WithURIs()), want: certs.ReasonProfile},
		{name: "two URI SANs", bundle: issue(testca.WithURIs(deviceURI(), deviceURI())), want: certs.ReasonProfile},
		{name: "SPIFFE ID of a user", bundle: issue(testca.WithURIs("spiffe://corp.example/user/aaaaaaaaaaaaaaaa")), want: certs.ReasonProfile},
		{name: "SPIFFE ID of the server", bundle: issue(testca.WithURIs(certs.ServerURI(td).String())), want: certs.ReasonProfile},
		{name: "invalid device ID", bundle: issue(testca.WithURIs("spiffe://corp.example/device/UPPER-case")), want: certs.ReasonProfile},
		{name: "SPIFFE ID with a query", bundle: issue(testca.WithURIs(deviceURI() + "?x=1")), want: certs.ReasonProfile},
		{name: "no DNS SAN", bundle: issue(testca.WithDNSNames()), want: certs.ReasonProfile},
		{name: "two DNS SANs", bundle: issue(testca.WithDNSNames("a.corp.example", "b.corp.example")), want: certs.ReasonProfile},
		{name: "DNS SAN two labels deep", bundle: issue(testca.WithDNSNames("peer.sub.corp.example")), want: certs.ReasonProfile},
		{name: "no IP SAN", bundle: issue(testca.WithIPs()), want: certs.ReasonProfile},
		{name: "missing WireGuard extension", bundle: issue(testca.WithoutExtension(certs.OIDWireGuardKey)), want: certs.ReasonProfile},
		{name: "WireGuard key of 31 bytes", bundle: issue(testca.WithWireGuardKeyBytes(bytes.Repeat([]byte{7}, 31))), want: certs.ReasonProfile},
		{name: "WireGuard key of 33 bytes", bundle: issue(testca.WithWireGuardKeyBytes(bytes.Repeat([]byte{7}, 33))), want: certs.ReasonProfile},
		{name: "all-zero WireGuard key", bundle: issue(testca.WithWireGuardKeyBytes(make([]byte, 32))), want: certs.ReasonProfile},
		{name: "WireGuard key not an OCTET STRING", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDWireGuardKey, Value: testca.UTF8String("0123456789abcdef0123456789abcdef")})), want: certs.ReasonProfile},
		{name: "WireGuard extension with trailing bytes", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDWireGuardKey, Value: append(testca.OctetString(bytes.Repeat([]byte{7}, 32)), 0, 0)})), want: certs.ReasonProfile},
		{name: "missing attestation extension", bundle: issue(testca.WithoutExtension(certs.OIDAttestation)), want: certs.ReasonProfile},
		{name: "unknown attestation level", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDAttestation, Value: testca.UTF8String("none")})), want: certs.ReasonProfile},
		{name: "attestation level as PrintableString", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDAttestation, Value: must(asn1.Marshal("tpm"))})), want: certs.ReasonProfile},
		{name: "invalid tag", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDTags, Value: utf8Seq("db", "Not A Tag")})), want: certs.ReasonProfile},
		{name: "tags as PrintableStrings", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDTags, Value: must(asn1.Marshal([]string{"db"}))})), want: certs.ReasonProfile},
		// x509 refuses an unknown critical extension before certmesh reads it.
		{name: "critical WireGuard extension", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDWireGuardKey, Critical: true, Value: testca.OctetString(bytes.Repeat([]byte{7}, 32))})), want: certs.ReasonUntrusted},

		// Key usage.
		{name: "CA certificate as machine certificate", bundle: issue(testca.WithTemplate(func(c *x509.Certificate) {
			c.IsCA, c.BasicConstraintsValid, c.KeyUsage = true, true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature
		})), want: certs.ReasonKeyUsage},
		{name: "the intermediate as machine certificate", bundle: wire(certs.WireBundle{Machine: ca.Intermediate().Cert.Raw}), want: certs.ReasonKeyUsage},
		{name: "server-only EKU", bundle: issue(testca.WithTemplate(func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })), want: certs.ReasonKeyUsage},

		// Malformed bundles.
		{name: "garbage machine certificate", bundle: wire(certs.WireBundle{Machine: []byte("not a certificate"), Intermediates: valid.Intermediates}), want: certs.ReasonMalformed},
		{name: "truncated machine certificate", bundle: wire(certs.WireBundle{Machine: valid.Machine[:len(valid.Machine)/2], Intermediates: valid.Intermediates}), want: certs.ReasonMalformed},
		{name: "machine certificate with trailing bytes", bundle: wire(certs.WireBundle{Machine: append(bytes.Clone(valid.Machine), 0), Intermediates: valid.Intermediates}), want: certs.ReasonMalformed},
		{name: "empty machine certificate", bundle: wire(certs.WireBundle{Intermediates: valid.Intermediates}), want: certs.ReasonMalformed},
		{name: "oversized machine certificate", bundle: wire(certs.WireBundle{Machine: make([]byte, certs.MaxCertSize+1)}), want: certs.ReasonMalformed},
		{name: "truncated intermediate", bundle: wire(certs.WireBundle{Machine: valid.Machine, Intermediates: [][]byte{valid.Intermediates[0][:100]}}), want: certs.ReasonMalformed},
		{name: "empty intermediate", bundle: wire(certs.WireBundle{Machine: valid.Machine, Intermediates: [][]byte{nil}}), want: certs.ReasonMalformed},
		{name: "too many certificates", bundle: wire(tooMany), want: certs.ReasonMalformed},
		{name: "duplicated WireGuard extension", bundle: issue(testca.WithDuplicateExtension(certs.OIDWireGuardKey)), want: certs.ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at, roots := tt.at, tt.roots
			if at.IsZero() {
				at = now
			}
			if roots == nil {
				roots = ca.Roots()
			}
			id, err := verifyWire(tt.bundle(t), roots, at)
			if err == nil {
				t.Fatalf("accepted, identity %+v; want rejection %q", id, tt.want)
			}
			if got := certs.ReasonOf(err); got != tt.want {
				t.Fatalf("reason %q (%v), want %q", got, err, tt.want)
			}
			if id.DeviceID != "" || id.WireGuardKey != (certs.WireGuardKey{}) || len(id.Addresses) != 0 {
				t.Errorf("rejection returned a non-empty identity %+v", id)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestVerifyAccepts(t *testing.T) {
	ca := testca.New(t, td)
	other := testca.New(t, td)
	b, _ := ca.IssueMachine(t, ca.NewProfile(t, "peer"))
	w := b.Wire()
	inter := w.Intermediates[0]
	full := certs.WireBundle{Machine: w.Machine}
	for range certs.MaxBundleCerts - 1 {
		full.Intermediates = append(full.Intermediates, inter)
	}
	tests := []struct {
		name   string
		bundle certs.WireBundle
		at     time.Time
	}{
		{"just issued", w, time.Now()},
		{"at its NotAfter", w, b.Machine.NotAfter},
		{"at its NotBefore", w, b.Machine.NotBefore},
		{"with an unrelated look-alike intermediate first", certs.WireBundle{Machine: w.Machine, Intermediates: [][]byte{other.Intermediate().Cert.Raw, inter}}, time.Now()},
		{"with the root in the bundle", certs.WireBundle{Machine: w.Machine, Intermediates: [][]byte{inter, ca.Root().Cert.Raw}}, time.Now()},
		{"with MaxBundleCerts certificates", full, time.Now()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := verifyWire(tt.bundle, ca.Roots(), tt.at)
			if err != nil {
				t.Fatal(err)
			}
			if id.Serial != b.Machine.SerialNumber.Text(16) {
				t.Errorf("serial %s, want %x", id.Serial, b.Machine.SerialNumber)
			}
		})
	}
}

func TestVerifyWithoutMachineOrRoots(t *testing.T) {
	ca := testca.New(t, td)
	b, _ := ca.IssueMachine(t, ca.NewProfile(t, "peer"))
	if _, err := certs.Verify(certs.Bundle{Intermediates: b.Intermediates}, ca.Roots(), nil, time.Now()); certs.ReasonOf(err) != certs.ReasonMalformed {
		t.Errorf("no machine certificate: %v, want malformed", err)
	}
	if _, err := certs.Verify(b, nil, nil, time.Now()); certs.ReasonOf(err) != certs.ReasonUntrusted {
		t.Errorf("no roots: %v, want untrusted-chain", err)
	}
	if certs.ReasonOf(nil) != "" || certs.ReasonOf(bytes.ErrTooLarge) != "" {
		t.Error("ReasonOf of a non-rejection is not empty")
	}
}
