package tpmtest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"testing"

	"github.com/certmesh/certmesh/tstest/tpmtest"
)

// The manufacturer's EK certificates must look like real ones, or the CA's
// handling of their quirks is not tested.
func TestEKCertificateShape(t *testing.T) {
	m := tpmtest.NewManufacturer(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := m.IssueEKCert(t, &k.PublicKey)

	if len(c.RawSubject) == 0 || len(c.Subject.Names) != 0 {
		t.Errorf("subject %q is not empty", c.Subject)
	}
	san := asn1.ObjectIdentifier{2, 5, 29, 17}
	var critical bool
	for _, e := range c.Extensions {
		if e.Id.Equal(san) {
			critical = e.Critical
		}
	}
	if !critical {
		t.Error("subjectAltName is not critical")
	}
	if len(c.UnhandledCriticalExtensions) != 1 || !c.UnhandledCriticalExtensions[0].Equal(san) {
		t.Errorf("unhandled critical extensions %v; want the SAN", c.UnhandledCriticalExtensions)
	}
	if len(c.UnknownExtKeyUsage) != 1 || !c.UnknownExtKeyUsage[0].Equal(asn1.ObjectIdentifier{2, 23, 133, 8, 1}) {
		t.Errorf("EKU %v", c.UnknownExtKeyUsage)
	}
	if c.KeyUsage != x509.KeyUsageKeyEncipherment || c.IsCA {
		t.Errorf("key usage %v, CA %v", c.KeyUsage, c.IsCA)
	}
	if err := c.CheckSignatureFrom(m.Intermediate); err != nil {
		t.Error(err)
	}
	if err := m.Intermediate.CheckSignatureFrom(m.Root); err != nil {
		t.Error(err)
	}
	if !k.PublicKey.Equal(c.PublicKey) {
		t.Error("certificate is for another key")
	}
	// Go alone refuses it, which is the point.
	if _, err := c.Verify(x509.VerifyOptions{Roots: m.Roots, Intermediates: m.Intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Error("Go verified an EK certificate with a critical directoryName-only SAN")
	}

	other := tpmtest.NewNamedManufacturer(t, "Other")
	if err := c.CheckSignatureFrom(other.Intermediate); err == nil {
		t.Error("two manufacturers share a key")
	}
}
