package testca

import (
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// IssueCRL signs a CRL with the CA's intermediate, as the CA does
// (certs.NewCRL), and returns its DER.
func (ca *CA) IssueCRL(t testing.TB, number int64, thisUpdate, nextUpdate time.Time, revoked ...certs.RevokedCert) []byte {
	t.Helper()
	der, err := certs.NewCRL(ca.inter, big.NewInt(number), thisUpdate, nextUpdate, revoked)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return der
}

// Revoked is the CRL entry of cert: revoked a minute ago for reason.
func Revoked(cert *x509.Certificate, reason int) certs.RevokedCert {
	return certs.RevokedCert{Serial: cert.SerialNumber, RevokedAt: time.Now().Add(-time.Minute), Reason: reason}
}

// CRLTemplate is the template of a CRL with these fields, for SignCRL.
// Edit it (ExtraExtensions, entries' ExtraExtensions, a negative number...)
// to make a CRL NewCRL never would.
func CRLTemplate(number int64, thisUpdate, nextUpdate time.Time, revoked ...certs.RevokedCert) *x509.RevocationList {
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	for _, r := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: r.Serial, RevocationTime: r.RevokedAt, ReasonCode: r.Reason,
		})
	}
	return tmpl
}

// SignCRL signs tmpl with key, naming as issuer the subject of name and as
// authority key ID its subject key ID (or, if it has none, the SHA-1 of
// its public key), for attack tests: a CRL signed by a leaf (name and key
// of a machine certificate), by another CA, by a CA without cRLSign, or
// naming the intermediate but signed with another key. Unlike
// certs.NewCRL and x509.CreateRevocationList it does not require name to be
// a CA with cRLSign or key to be name's.
func SignCRL(t testing.TB, name *x509.Certificate, key crypto.Signer, tmpl *x509.RevocationList) []byte {
	t.Helper()
	issuer := *name // x509.CreateRevocationList reads only the subject, key usage and key ID
	issuer.KeyUsage |= x509.KeyUsageCRLSign
	if len(issuer.SubjectKeyId) == 0 {
		issuer.SubjectKeyId = keyID(t, name.RawSubjectPublicKeyInfo)
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, &issuer, key)
	if err != nil {
		t.Fatalf("testca: signing CRL: %v", err)
	}
	return der
}

// keyID is the SHA-1 of the subjectPublicKey BIT STRING of spki (RFC 5280
// 4.2.1.2, method 1), as Go computes subject key IDs.
func keyID(t testing.TB, spki []byte) []byte {
	t.Helper()
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		t.Fatalf("testca: parsing public key: %v", err)
	}
	sum := sha1.Sum(info.PublicKey.Bytes)
	return sum[:]
}
