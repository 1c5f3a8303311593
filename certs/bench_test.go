package certs_test

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

// BenchmarkVerify measures how many peer bundles an agent verifies per
// second: already parsed, and from the wire (ParseBundle + Verify); each
// without and with (+user) a user certificate.
func BenchmarkVerify(b *testing.B) {
	ca := testca.New(b, td)
	p := ca.NewProfile(b, "peer")
	p.Tags = []certs.Tag{"db", "prod"}
	bundle, _ := ca.IssueMachine(b, p)
	withUser := ca.IssueUser(b, bundle, testca.WithGroups("eng", "ops"))
	now := time.Now()

	for _, c := range []struct {
		name   string
		bundle certs.Bundle
	}{{"", bundle}, {"+user", withUser}} {
		w := c.bundle.Wire()
		check := func(b *testing.B, id certs.Identity, err error) {
			if err != nil {
				b.Fatal(err)
			}
			if (c.bundle.User != nil) != (id.User != nil) {
				b.Fatalf("user %+v rejected %v", id.User, id.UserRejected)
			}
		}
		b.Run("parsed"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				id, err := certs.Verify(c.bundle, ca.Roots(), nil, now)
				check(b, id, err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "bundles/s")
		})
		b.Run("wire"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				id, err := verifyWire(w, ca.Roots(), now)
				check(b, id, err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "bundles/s")
		})
	}
}

// BenchmarkIssueMachine measures the CA's part of an issuance: rendering
// the machine template for a CSR and signing it with the intermediate.
func BenchmarkIssueMachine(b *testing.B) {
	ca := testca.New(b, td)
	p := ca.NewProfile(b, "peer")
	key, err := certs.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	csr, err := x509util.CreateCertificateRequest("", nil, key)
	if err != nil {
		b.Fatal(err)
	}
	issuer := ca.Intermediate()
	b.ReportAllocs()
	for b.Loop() {
		tmpl, err := certs.NewMachineCertificate(csr, p)
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Minute), now.Add(testca.MachineLifetime)
		if _, err := x509util.CreateCertificate(tmpl, issuer.Cert, key.Public(), issuer.Key); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}

// BenchmarkVerifyCRL measures VerifyCRL of a CRL of 10,000 entries (random
// 128-bit serials, about 540 KB): a new CRL (nothing held), and the same
// CRL again (held: "no change", the same bytes or signed again), and one
// IsRevoked lookup.
func BenchmarkVerifyCRL(b *testing.B) {
	ca := testca.New(b, td)
	now := time.Now()
	revoked := make([]certs.RevokedCert, 10000)
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for i := range revoked {
		s, err := rand.Int(rand.Reader, limit)
		if err != nil {
			b.Fatal(err)
		}
		revoked[i] = certs.RevokedCert{Serial: s.Add(s, big.NewInt(1)), RevokedAt: now.Add(-time.Duration(i) * time.Second), Reason: i % 6}
	}
	der := ca.IssueCRL(b, 1000, now.Add(-time.Minute), now.Add(5*time.Minute), revoked...)
	inters := []*x509.Certificate{ca.Intermediate().Cert}
	held, err := certs.VerifyCRL(der, ca.Roots(), inters, now, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("CRL of %d entries: %d bytes", held.Len(), len(der))
	resigned := ca.IssueCRL(b, 1000, now.Add(-time.Minute), now.Add(5*time.Minute), revoked...)
	for _, c := range []struct {
		name    string
		der     []byte
		current *certs.CRL
	}{
		{"10k", der, nil},                    // a new CRL
		{"10k-same", bytes.Clone(der), held}, // the CRL held, received again
		{"10k-resigned", resigned, held},     // the CRL held, signed again
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.der)))
			for b.Loop() {
				if _, err := certs.VerifyCRL(c.der, ca.Roots(), inters, now, c.current); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("IsRevoked", func(b *testing.B) {
		s := new(big.Int).Set(revoked[5000].Serial)
		for b.Loop() {
			if !held.IsRevoked(s) {
				b.Fatal("not revoked")
			}
		}
	})
}
