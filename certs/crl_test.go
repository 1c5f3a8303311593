package certs_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

// crlFixture is a CA with a machine certificate to revoke and one to keep.
type crlFixture struct {
	ca              *testca.CA
	revoked, kept   certs.Bundle
	revokedKey      certs.KeyPair // the revoked machine certificate with its key: a leaf
	now, this, next time.Time
}

func newCRLFixture(t testing.TB) *crlFixture {
	t.Helper()
	ca := testca.New(t, td)
	revoked, key := ca.IssueMachine(t, ca.NewProfile(t, "lost"))
	kept, _ := ca.IssueMachine(t, ca.NewProfile(t, "kept"))
	now := time.Now()
	return &crlFixture{
		ca: ca, revoked: revoked, kept: kept,
		revokedKey: certs.KeyPair{Cert: revoked.Machine, Key: key},
		now:        now, this: now.Add(-time.Minute), next: now.Add(5 * time.Minute),
	}
}

func (f *crlFixture) inters() []*x509.Certificate {
	return []*x509.Certificate{f.ca.Intermediate().Cert}
}

func TestCRLRoundTrip(t *testing.T) {
	f := newCRLFixture(t)
	inter := f.ca.Intermediate().Cert
	revokedAt := f.now.Add(-time.Hour)
	other := big.NewInt(0x1234)
	entries := []certs.RevokedCert{
		{Serial: f.revoked.Machine.SerialNumber, RevokedAt: revokedAt, Reason: certs.RevokeKeyCompromise},
		{Serial: other, RevokedAt: revokedAt, Reason: certs.RevokeUnspecified},
		{Serial: big.NewInt(7), RevokedAt: revokedAt, Reason: certs.RevokeCessationOfOperation},
	}
	der, err := certs.NewCRL(f.ca.Intermediate(), big.NewInt(42), f.this, f.next, entries)
	if err != nil {
		t.Fatal(err)
	}

	// What x509 sees: AKI, number and nextUpdate, signed by the intermediate.
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.CheckSignatureFrom(inter); err != nil {
		t.Errorf("CheckSignatureFrom(intermediate): %v", err)
	}
	if !bytes.Equal(rl.AuthorityKeyId, inter.SubjectKeyId) || rl.Number.Int64() != 42 || rl.NextUpdate.IsZero() || !bytes.Equal(rl.RawIssuer, inter.RawSubject) {
		t.Errorf("CRL AKI %x number %v nextUpdate %v issuer %v", rl.AuthorityKeyId, rl.Number, rl.NextUpdate, rl.Issuer)
	}

	crl, err := certs.VerifyCRL(der, f.ca.Roots(), f.inters(), f.now, nil)
	if err != nil {
		t.Fatalf("VerifyCRL: %v", err)
	}
	if crl.Number.Int64() != 42 || !crl.ThisUpdate.Equal(f.this.Truncate(time.Second)) || !crl.NextUpdate.Equal(f.next.Truncate(time.Second)) {
		t.Errorf("number %v thisUpdate %v nextUpdate %v", crl.Number, crl.ThisUpdate, crl.NextUpdate)
	}
	if !bytes.Equal(crl.IssuerSKID, inter.SubjectKeyId) || crl.Issuer != inter || !bytes.Equal(crl.Raw, der) {
		t.Errorf("issuer SKID %x issuer %v, raw equal %v", crl.IssuerSKID, crl.Issuer.Subject, bytes.Equal(crl.Raw, der))
	}
	if crl.Len() != 3 {
		t.Errorf("Len = %d, want 3", crl.Len())
	}
	got := crl.Revoked()
	for i, e := range entries {
		if got[i].Serial.Cmp(e.Serial) != 0 || !got[i].RevokedAt.Equal(e.RevokedAt.Truncate(time.Second)) || got[i].Reason != e.Reason {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], e)
		}
	}
	got[0].Serial.SetInt64(1) // a copy: the CRL is unchanged
	if !crl.IsRevoked(f.revoked.Machine.SerialNumber) {
		t.Error("Revoked() returned the CRL's own serials")
	}

	// IsRevoked and Entry: a map lookup by value, not by pointer.
	for _, s := range []*big.Int{new(big.Int).Set(f.revoked.Machine.SerialNumber), big.NewInt(0x1234), big.NewInt(7)} {
		if !crl.IsRevoked(s) {
			t.Errorf("IsRevoked(%x) = false", s)
		}
	}
	for _, s := range []*big.Int{f.kept.Machine.SerialNumber, big.NewInt(0x1235), big.NewInt(-7), big.NewInt(0), nil} {
		if crl.IsRevoked(s) {
			t.Errorf("IsRevoked(%v) = true", s)
		}
	}
	if e, ok := crl.Entry(f.revoked.Machine.SerialNumber); !ok || e.Reason != certs.RevokeKeyCompromise {
		t.Errorf("Entry = %+v, %v", e, ok)
	}
	if _, ok := crl.Entry(f.kept.Machine.SerialNumber); ok {
		t.Error("Entry of a certificate not listed")
	}

	// Covers: our intermediate's certificates, not another CA's.
	if !crl.Covers(f.revoked.Machine) || !crl.Covers(f.kept.Machine) {
		t.Error("the CRL does not cover the intermediate's certificates")
	}
	other2 := testca.New(t, td)
	foreign, _ := other2.IssueMachine(t, other2.NewProfile(t, "x"))
	if crl.Covers(foreign.Machine) || crl.Covers(inter) || crl.Covers(nil) {
		t.Error("the CRL covers a certificate of another issuer")
	}

	// An empty CRL is fine too.
	empty := f.ca.IssueCRL(t, 43, f.this, f.next)
	crl2, err := certs.VerifyCRL(empty, f.ca.Roots(), f.inters(), f.now, crl)
	if err != nil || crl2.Len() != 0 || crl2.IsRevoked(f.revoked.Machine.SerialNumber) {
		t.Fatalf("empty CRL: %v, %d entries", err, crl2.Len())
	}
}

// openssl reads what NewCRL writes, and verifies its signature with the
// intermediate.
func TestCRLOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	f := newCRLFixture(t)
	der := f.ca.IssueCRL(t, 7, f.this, f.next, testca.Revoked(f.revoked.Machine, certs.RevokeKeyCompromise))
	dir := t.TempDir()
	crlPath, caPath := filepath.Join(dir, "crl.der"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(crlPath, der, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caPath, certs.EncodePEM(f.ca.Intermediate().Cert, f.ca.Root().Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", crlPath, "-text", "-noout", "-CAfile", caPath).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	serial := strings.ToUpper(f.revoked.Machine.SerialNumber.Text(16))
	if len(serial)%2 == 1 {
		serial = "0" + serial
	}
	for _, want := range []string{
		"verify OK",
		"Certificate Revocation List (CRL):",
		"Version 2",
		"X509v3 CRL Number:",
		"X509v3 Authority Key Identifier:",
		"Next Update:",
		"Serial Number: " + serial,
		"Key Compromise",
		"CN = certmesh intermediate " + string(td),
		colonHex(f.ca.Intermediate().Cert.SubjectKeyId),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("openssl output lacks %q:\n%s", want, out)
		}
	}

	// openssl, too, refuses it with another CA's intermediate.
	other := testca.New(t, td)
	if err := os.WriteFile(caPath, certs.EncodePEM(other.Intermediate().Cert, other.Root().Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command("openssl", "crl", "-inform", "DER", "-in", crlPath, "-noout", "-CAfile", caPath).CombinedOutput()
	if strings.Contains(string(out), "verify OK") {
		t.Errorf("openssl verified the CRL with another CA:\n%s", out)
	}
}

// colonHex is b as openssl prints key IDs: upper-case hex bytes joined by ':'.
func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = strings.ToUpper(hex.EncodeToString([]byte{x}))
	}
	return strings.Join(parts, ":")
}

func TestNewIntermediateSignsCRLs(t *testing.T) {
	ca := testca.New(t, td)
	inter := ca.Intermediate().Cert
	if inter.KeyUsage&x509.KeyUsageCRLSign == 0 || inter.KeyUsage&x509.KeyUsageCertSign == 0 || !inter.IsCA || len(inter.SubjectKeyId) == 0 {
		t.Fatalf("intermediate key usage %b, CA %v, SKID %x: want certSign and cRLSign", inter.KeyUsage, inter.IsCA, inter.SubjectKeyId)
	}
}

func TestNewCRLRefuses(t *testing.T) {
	f := newCRLFixture(t)
	inter := f.ca.Intermediate()
	otherKey, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	one := big.NewInt(1)
	entry := func(serial *big.Int, reason int) []certs.RevokedCert {
		return []certs.RevokedCert{{Serial: serial, RevokedAt: f.now, Reason: reason}}
	}
	for _, c := range []struct {
		name       string
		issuer     *certs.KeyPair
		number     *big.Int
		this, next time.Time
		revoked    []certs.RevokedCert
	}{
		{"no issuer", nil, one, f.this, f.next, nil},
		{"no key", &certs.KeyPair{Cert: inter.Cert}, one, f.this, f.next, nil},
		{"leaf issuer", &f.revokedKey, one, f.this, f.next, nil},
		{"key of another certificate", &certs.KeyPair{Cert: inter.Cert, Key: otherKey}, one, f.this, f.next, nil},
		{"nil number", inter, nil, f.this, f.next, nil},
		{"negative number", inter, big.NewInt(-1), f.this, f.next, nil},
		{"number over 20 octets", inter, new(big.Int).Lsh(one, 159), f.this, f.next, nil},
		{"nextUpdate before thisUpdate", inter, one, f.next, f.this, nil},
		{"nextUpdate equal to thisUpdate", inter, one, f.this, f.this, nil},
		{"nil serial", inter, one, f.this, f.next, entry(nil, 0)},
		{"zero serial", inter, one, f.this, f.next, entry(big.NewInt(0), 0)},
		{"negative serial", inter, one, f.this, f.next, entry(big.NewInt(-3), 0)},
		{"no revocation time", inter, one, f.this, f.next, []certs.RevokedCert{{Serial: one}}},
		{"reason 7", inter, one, f.this, f.next, entry(one, 7)},
		{"removeFromCRL", inter, one, f.this, f.next, entry(one, certs.RevokeRemoveFromCRL)},
		{"reason 11", inter, one, f.this, f.next, entry(one, 11)},
		{"negative reason", inter, one, f.this, f.next, entry(one, -1)},
		{"duplicate serial", inter, one, f.this, f.next, append(entry(big.NewInt(5), 0), entry(big.NewInt(5), 1)...)},
	} {
		if der, err := certs.NewCRL(c.issuer, c.number, c.this, c.next, c.revoked); err == nil {
			t.Errorf("%s: NewCRL made a %d-byte CRL", c.name, len(der))
		}
	}
	// The largest number is fine.
	max := new(big.Int).Sub(new(big.Int).Lsh(one, 159), one)
	der, err := certs.NewCRL(inter, max, f.this, f.next, nil)
	if err != nil {
		t.Fatal(err)
	}
	if crl, err := certs.VerifyCRL(der, f.ca.Roots(), f.inters(), f.now, nil); err != nil || crl.Number.Cmp(max) != 0 {
		t.Fatalf("VerifyCRL of the largest number: %v", err)
	}
}

// TestVerifyCRLRejects: every reason VerifyCRL refuses a CRL for, with the
// CRL otherwise valid.
func TestVerifyCRLRejects(t *testing.T) {
	f := newCRLFixture(t)
	ca, inter, root := f.ca, f.ca.Intermediate(), f.ca.Root()
	entry := testca.Revoked(f.revoked.Machine, certs.RevokeKeyCompromise)
	tmpl := func() *x509.RevocationList { return testca.CRLTemplate(10, f.this, f.next, entry) }
	good := ca.IssueCRL(t, 10, f.this, f.next, entry)

	otherCA := testca.New(t, td)
	otherKey, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	noCRLSign := ca.IssueIntermediate(t, testca.WithTemplate(func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageCertSign }))
	expired := ca.IssueIntermediate(t, testca.WithValidity(f.now.Add(-2*time.Hour), f.now.Add(-time.Hour)))
	// A CA below the intermediate, with cRLSign: the intermediate's zero
	// path length forbids it, and only a CA the root issued may sign CRLs.
	subCA, subKey := ca.IssueMachine(t, ca.NewProfile(t, "subca"), testca.WithTemplate(func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}))
	held, err := certs.VerifyCRL(good, ca.Roots(), f.inters(), f.now, nil)
	if err != nil {
		t.Fatal(err)
	}

	crit := func(ext pkix.Extension) []byte {
		r := tmpl()
		r.ExtraExtensions = append(r.ExtraExtensions, ext)
		return testca.SignCRL(t, inter.Cert, inter.Key, r)
	}
	critEntry := func() []byte {
		r := tmpl()
		r.RevokedCertificateEntries[0].ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 29}, Critical: true, Value: []byte{0x30, 0}}}
		return testca.SignCRL(t, inter.Cert, inter.Key, r)
	}
	withNumber := func(n int64) []byte {
		r := tmpl()
		r.Number = big.NewInt(n)
		return testca.SignCRL(t, inter.Cert, inter.Key, r)
	}
	reasonEntry := func(reason int) []byte {
		r := tmpl()
		r.RevokedCertificateEntries[0].ReasonCode = reason
		return testca.SignCRL(t, inter.Cert, inter.Key, r)
	}
	badAKI := func() []byte {
		name := *inter.Cert
		name.SubjectKeyId = []byte{1, 2, 3}
		return testca.SignCRL(t, &name, inter.Key, tmpl())
	}
	leafCert := f.revokedKey.Cert

	type tc struct {
		name   string
		der    []byte
		inters []*x509.Certificate
		now    time.Time
		held   *certs.CRL
		want   certs.Reason
	}
	cases := []tc{
		{name: "empty", der: nil, want: certs.ReasonCRLMalformed},
		{name: "garbage", der: []byte("not a CRL"), want: certs.ReasonCRLMalformed},
		{name: "a certificate", der: inter.Cert.Raw, want: certs.ReasonCRLMalformed},
		{name: "truncated", der: good[:len(good)-1], want: certs.ReasonCRLMalformed},
		{name: "trailing data", der: append(bytes.Clone(good), 0), want: certs.ReasonCRLMalformed},
		{name: "too large", der: append(bytes.Clone(good), make([]byte, certs.MaxCRLSize)...), want: certs.ReasonCRLMalformed},
		// x509 omits a zero nextUpdate, and refuses it before a non-zero thisUpdate.
		{name: "no nextUpdate", der: testca.SignCRL(t, inter.Cert, inter.Key, testca.CRLTemplate(10, time.Time{}, time.Time{})), want: certs.ReasonCRLMalformed},
		{name: "negative number", der: withNumber(-5), want: certs.ReasonCRLMalformed},
		{name: "unknown critical extension", der: crit(pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{5, 0}}), want: certs.ReasonCRLMalformed},
		{name: "issuing distribution point", der: crit(pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: []byte{0x30, 0}}), want: certs.ReasonCRLMalformed},
		{name: "delta CRL", der: crit(pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Value: []byte{2, 1, 9}}), want: certs.ReasonCRLMalformed},
		{name: "CRL number twice", der: crit(pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 20}, Value: []byte{2, 1, 99}}), want: certs.ReasonCRLMalformed},
		{name: "critical entry extension", der: critEntry(), want: certs.ReasonCRLMalformed},
		{name: "removeFromCRL entry", der: reasonEntry(certs.RevokeRemoveFromCRL), want: certs.ReasonCRLMalformed},

		{name: "no root", der: good, want: certs.ReasonCRLUntrusted},
		{name: "no intermediates", der: good, inters: []*x509.Certificate{}, want: certs.ReasonCRLUntrusted},
		{name: "another CA, its intermediate given", der: otherCA.IssueCRL(t, 11, f.this, f.next), inters: []*x509.Certificate{otherCA.Intermediate().Cert, inter.Cert}, want: certs.ReasonCRLUntrusted},
		{name: "another CA, only ours given", der: otherCA.IssueCRL(t, 11, f.this, f.next), want: certs.ReasonCRLUntrusted},
		{name: "intermediate's name, another key", der: testca.SignCRL(t, inter.Cert, otherKey, tmpl()), want: certs.ReasonCRLUntrusted},
		{name: "intermediate's name, another CA's key", der: testca.SignCRL(t, inter.Cert, otherCA.Intermediate().Key, tmpl()), inters: []*x509.Certificate{inter.Cert, otherCA.Intermediate().Cert}, want: certs.ReasonCRLUntrusted},
		{name: "other authority key ID", der: badAKI(), want: certs.ReasonCRLUntrusted},
		{name: "signed by the root", der: testca.SignCRL(t, root.Cert, root.Key, tmpl()), inters: []*x509.Certificate{root.Cert, inter.Cert}, want: certs.ReasonCRLUntrusted},
		{name: "signed by a CA below the intermediate", der: testca.SignCRL(t, subCA.Machine, subKey, tmpl()), inters: []*x509.Certificate{subCA.Machine, inter.Cert}, want: certs.ReasonCRLUntrusted},
		{name: "signed by an expired intermediate", der: testca.SignCRL(t, expired.Cert, expired.Key, tmpl()), inters: []*x509.Certificate{expired.Cert}, want: certs.ReasonCRLUntrusted},
		{name: "intermediate expired now", der: good, now: inter.Cert.NotAfter.Add(time.Hour), want: certs.ReasonCRLUntrusted},

		{name: "signed by a leaf", der: testca.SignCRL(t, leafCert, f.revokedKey.Key, tmpl()), inters: []*x509.Certificate{leafCert, inter.Cert}, want: certs.ReasonCRLSignedByLeaf},
		{name: "signed by a leaf, leaf listed first", der: testca.SignCRL(t, leafCert, f.revokedKey.Key, tmpl()), inters: []*x509.Certificate{inter.Cert, leafCert}, want: certs.ReasonCRLSignedByLeaf},
		{name: "leaf key, intermediate's name", der: testca.SignCRL(t, inter.Cert, f.revokedKey.Key, tmpl()), inters: []*x509.Certificate{inter.Cert, leafCert}, want: certs.ReasonCRLSignedByLeaf},
		{name: "leaf key, leaf not given", der: testca.SignCRL(t, leafCert, f.revokedKey.Key, tmpl()), want: certs.ReasonCRLUntrusted},
		{name: "CA without cRLSign", der: testca.SignCRL(t, noCRLSign.Cert, noCRLSign.Key, tmpl()), inters: []*x509.Certificate{noCRLSign.Cert}, want: certs.ReasonCRLSignedByLeaf},

		{name: "thisUpdate in an hour", der: ca.IssueCRL(t, 11, f.now.Add(time.Hour), f.now.Add(2*time.Hour)), want: certs.ReasonCRLNotYetValid},
		{name: "thisUpdate past the skew", der: ca.IssueCRL(t, 11, f.now.Add(certs.CRLClockSkew+time.Minute), f.now.Add(time.Hour)), want: certs.ReasonCRLNotYetValid},

		{name: "lower number", der: ca.IssueCRL(t, 9, f.this, f.next), held: held, want: certs.ReasonCRLRollback},
		{name: "lower number, newer thisUpdate", der: ca.IssueCRL(t, 1, f.now, f.now.Add(time.Hour)), held: held, want: certs.ReasonCRLRollback},
		{name: "same number, fewer entries", der: ca.IssueCRL(t, 10, f.this, f.next), held: held, want: certs.ReasonCRLConflict},
		{name: "same number, other nextUpdate", der: ca.IssueCRL(t, 10, f.this, f.next.Add(time.Minute), entry), held: held, want: certs.ReasonCRLConflict},
	}
	for _, c := range cases {
		roots := ca.Roots()
		if c.name == "no root" {
			roots = nil
		}
		inters := c.inters
		if inters == nil {
			inters = f.inters()
		}
		now := c.now
		if now.IsZero() {
			now = f.now
		}
		crl, err := certs.VerifyCRL(c.der, roots, inters, now, c.held)
		if got := certs.ReasonOf(err); got != c.want || crl != nil {
			t.Errorf("%s: VerifyCRL = %v, %v (reason %q), want reason %q", c.name, crl != nil, err, got, c.want)
		}
	}

	// Within the skew, in the future is fine; the intermediates given may
	// include the leaf and others.
	soon := ca.IssueCRL(t, 11, f.now.Add(certs.CRLClockSkew-time.Minute), f.now.Add(time.Hour))
	if _, err := certs.VerifyCRL(soon, ca.Roots(), []*x509.Certificate{leafCert, otherCA.Intermediate().Cert, inter.Cert}, f.now, held); err != nil {
		t.Errorf("thisUpdate within the skew: %v", err)
	}
}

func TestVerifyCRLSequence(t *testing.T) {
	f := newCRLFixture(t)
	ca, roots := f.ca, f.ca.Roots()
	entry := testca.Revoked(f.revoked.Machine, certs.RevokeKeyCompromise)
	verify := func(der []byte, inters []*x509.Certificate, held *certs.CRL) *certs.CRL {
		t.Helper()
		crl, err := certs.VerifyCRL(der, roots, inters, f.now, held)
		if err != nil {
			t.Fatal(err)
		}
		return crl
	}
	c5 := verify(ca.IssueCRL(t, 5, f.this, f.next), f.inters(), nil)

	// Same number and content, signed again (another ECDSA signature) or
	// received again: no change, the CRL held is returned.
	again := ca.IssueCRL(t, 5, f.this, f.next)
	if got := verify(again, f.inters(), c5); got != c5 {
		t.Error("the same CRL signed again is not \"no change\"")
	}
	if got := verify(c5.Raw, f.inters(), c5); got != c5 {
		t.Error("the same CRL is not \"no change\"")
	}

	// A higher number, with the revocation.
	c6 := verify(ca.IssueCRL(t, 6, f.this, f.next, entry), f.inters(), c5)
	if c6 == c5 || !c6.IsRevoked(f.revoked.Machine.SerialNumber) {
		t.Fatal("CRL 6 not taken")
	}
	// Numbers need not be consecutive, and the entry may go again (the
	// certificate expired).
	c9 := verify(ca.IssueCRL(t, 9, f.this, f.next), f.inters(), c6)
	if c9.IsRevoked(f.revoked.Machine.SerialNumber) {
		t.Fatal("CRL 9 lists the serial")
	}

	// A second intermediate under the root (rotation) continues the one
	// sequence: higher numbers pass, lower ones are a rollback.
	second := ca.IssueIntermediate(t)
	both := []*x509.Certificate{f.ca.Intermediate().Cert, second.Cert}
	c10, err := certs.NewCRL(second, big.NewInt(10), f.this, f.next, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := verify(c10, both, c9)
	if !bytes.Equal(got.IssuerSKID, second.Cert.SubjectKeyId) || got.Issuer != second.Cert || got.Covers(f.kept.Machine) {
		t.Errorf("CRL of the second intermediate: issuer %v", got.Issuer.Subject)
	}
	back := ca.IssueCRL(t, 8, f.this, f.next)
	if _, err := certs.VerifyCRL(back, roots, both, f.now, got); certs.ReasonOf(err) != certs.ReasonCRLRollback {
		t.Errorf("older CRL of the first intermediate: %v", err)
	}
	same, err := certs.NewCRL(ca.Intermediate(), big.NewInt(10), f.this, f.next, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certs.VerifyCRL(same, roots, both, f.now, got); certs.ReasonOf(err) != certs.ReasonCRLConflict {
		t.Errorf("CRL 10 of the other intermediate: %v", err)
	}
}

func TestCRLStale(t *testing.T) {
	f := newCRLFixture(t)
	next := f.now.Add(5 * time.Minute).Truncate(time.Second)
	// An hour past nextUpdate, the CRL is still accepted: staleness is the
	// agent's decision.
	crl, err := certs.VerifyCRL(f.ca.IssueCRL(t, 1, f.this, next), f.ca.Roots(), f.inters(), next.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		now   time.Time
		grace time.Duration
		want  bool
	}{
		{f.now, 0, false},
		{next, 0, false},
		{next.Add(time.Second), 0, true},
		{next.Add(time.Minute), 2 * time.Minute, false},
		{next.Add(2 * time.Minute), 2 * time.Minute, false},
		{next.Add(2*time.Minute + time.Second), 2 * time.Minute, true},
		{next.Add(time.Hour), 2 * time.Minute, true},
	} {
		if got := crl.Stale(c.now, c.grace); got != c.want {
			t.Errorf("Stale(nextUpdate%+v, %v) = %v, want %v", c.now.Sub(next), c.grace, got, c.want)
		}
	}
	var none *certs.CRL
	if !none.Stale(f.now, time.Hour) {
		t.Error("no CRL is not stale")
	}
}
