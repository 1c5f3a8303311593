package certs_test

import (
	"testing"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testca"
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
				id, err := certs.Verify(c.bundle, ca.Roots(), now)
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
