// Package tpmtest is the test fixture for TPM attestation: a TPM
// manufacturer CA that issues EK certificates shaped like real ones, and
// (with the build tag tpmsimulator, cgo and libssl-dev) a fresh Microsoft
// reference TPM simulator behind an agent/tpmkey handle, with helpers that
// make the bad keys an attacker would try.
package tpmtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"
)

// TCG OIDs used in EK certificates (TCG EK Credential Profile).
var (
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	oidEKCertificate   = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
	oidSubjectAltName  = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// Manufacturer is a TPM manufacturer's CA: a root and an intermediate that
// issues EK certificates.
type Manufacturer struct {
	Root         *x509.Certificate
	Intermediate *x509.Certificate
	// Roots holds Root, for ca/attest.Policy.ManufacturerRoots.
	Roots *x509.CertPool
	// Intermediates holds Intermediate, for
	// ca/attest.Policy.ManufacturerIntermediates (real TPMs do not carry
	// their EK certificate's issuer).
	Intermediates *x509.CertPool

	rootKey, intKey *ecdsa.PrivateKey
	name            string
}

// NewManufacturer makes a manufacturer CA named like a TPM vendor.
func NewManufacturer(t testing.TB) *Manufacturer {
	t.Helper()
	return NewNamedManufacturer(t, "Test TPM Manufacturer")
}

// NewNamedManufacturer makes a manufacturer CA with the given name.
func NewNamedManufacturer(t testing.TB, name string) *Manufacturer {
	t.Helper()
	m := &Manufacturer{name: name}
	m.rootKey = mustKey(t)
	m.intKey = mustKey(t)
	now := time.Now()
	rootTmpl := caTemplate(t, name, name+" EK Root CA", now, 20)
	m.Root = mustCreate(t, rootTmpl, rootTmpl, m.rootKey.Public(), m.rootKey)
	intTmpl := caTemplate(t, name, name+" EK Issuing CA 001", now, 15)
	intTmpl.MaxPathLenZero = true
	m.Intermediate = mustCreate(t, intTmpl, m.Root, m.intKey.Public(), m.rootKey)
	m.Roots = x509.NewCertPool()
	m.Roots.AddCert(m.Root)
	m.Intermediates = x509.NewCertPool()
	m.Intermediates.AddCert(m.Intermediate)
	return m
}

// caTemplate is a manufacturer CA certificate of org, valid from an hour
// before now for years.
func caTemplate(t testing.TB, org, cn string, now time.Time, years int) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Organization: []string{org}, CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Duration(years) * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// IssueEKCert issues an EK certificate for ekPub the way TPM vendors do:
// empty subject; a critical subjectAltName holding only a directoryName
// with the TPM manufacturer, model and version (which Go's x509 reports as
// an unhandled critical extension); extended key usage
// tcg-kp-EKCertificate (2.23.133.8.1, unknown to Go); key usage
// keyEncipherment; not a CA.
func (m *Manufacturer) IssueEKCert(t testing.TB, ekPub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	return m.IssueEKCertWith(t, ekPub, nil)
}

// IssueEKCertWith is IssueEKCert with a hook to change the template.
func (m *Manufacturer) IssueEKCertWith(t testing.TB, ekPub crypto.PublicKey, edit func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	dirName, err := asn1.Marshal(pkix.RDNSequence{
		{{Type: oidTPMManufacturer, Value: "id:4D534654"}},
		{{Type: oidTPMModel, Value: "certmesh-test"}},
		{{Type: oidTPMVersion, Value: "id:00020000"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: dirName}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{oidEKCertificate},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: oidSubjectAltName, Critical: true, Value: san}},
	}
	if edit != nil {
		edit(tmpl)
	}
	return mustCreate(t, tmpl, m.Intermediate, ekPub, m.intKey)
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

func mustCreate(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, priv crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		t.Fatalf("tpmtest: creating certificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("tpmtest: parsing certificate: %v", err)
	}
	return c
}
