package attest_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/certmesh/certmesh/ca/attest"
	"github.com/certmesh/certmesh/internal/fuzzedit"
	"github.com/certmesh/certmesh/tstest/tpmtest"
)

func wantReason(t *testing.T, err error, r attest.Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want refusal %q", r)
	}
	if got := attest.ReasonOf(err); got != r {
		t.Fatalf("refused with %q (%v); want %q", got, err, r)
	}
	if !errors.Is(err, r) {
		t.Fatalf("errors.Is(err, %q) is false for %v", r, err)
	}
	if !strings.Contains(err.Error(), r.Error()) {
		t.Fatalf("message %q does not say %q", err, r.Error())
	}
}

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ---- fingerprints and the allow-list ----

func TestFingerprintIsSHA256OfSPKI(t *testing.T) {
	k := rsaKey(t, 2048)
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(der)
	got, err := attest.FingerprintEK(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if got != attest.EKFingerprint(want) || got.String() != hex.EncodeToString(want[:]) {
		t.Fatalf("fingerprint %s, want %x", got, want)
	}
	if _, err := attest.FingerprintEK(struct{}{}); err == nil {
		t.Fatal("fingerprint of a non-key accepted")
	}
}

func TestParseEKFingerprint(t *testing.T) {
	sum := sha256.Sum256([]byte("ek"))
	want := attest.EKFingerprint(sum)
	h := hex.EncodeToString(sum[:])
	var colons []string
	for i := 0; i < len(h); i += 2 {
		colons = append(colons, strings.ToUpper(h[i:i+2]))
	}
	for _, in := range []string{
		h,
		strings.ToUpper(h),
		"  " + h + "\t",
		strings.Join(colons, ":"),
		"sha256:" + h,
		"SHA256:" + h,
		"sha256:" + base64.StdEncoding.EncodeToString(sum[:]),
	} {
		got, err := attest.ParseEKFingerprint(in)
		if err != nil || got != want {
			t.Errorf("ParseEKFingerprint(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", h[:62], h + "00", "zz" + h[2:], "sha256:abc", "sha1:" + h} {
		if _, err := attest.ParseEKFingerprint(in); err == nil {
			t.Errorf("ParseEKFingerprint(%q) accepted", in)
		}
	}
	var f attest.EKFingerprint
	if err := f.UnmarshalText([]byte(h)); err != nil || f != want {
		t.Fatalf("UnmarshalText: %s %v", f, err)
	}
	if b, _ := want.MarshalText(); string(b) != h {
		t.Fatalf("MarshalText %s", b)
	}
	if !(attest.EKFingerprint{}).IsZero() || want.IsZero() {
		t.Fatal("IsZero")
	}
}

func TestParseAllowList(t *testing.T) {
	a := sha256.Sum256([]byte("a"))
	b := sha256.Sum256([]byte("b"))
	c := sha256.Sum256([]byte("c"))
	in := "# exported from the MDM, 2026-11-25\n" +
		"\n" +
		hex.EncodeToString(a[:]) + "\n" +
		"  " + strings.ToUpper(hex.EncodeToString(b[:])) + "   # laptop-42\r\n" +
		hex.EncodeToString(a[:]) + "\n" + // duplicate
		"sha256:" + base64.StdEncoding.EncodeToString(c[:]) + "\n" +
		"   # indented comment\n"
	got, err := attest.ParseAllowList(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !got[attest.EKFingerprint(a)] || !got[attest.EKFingerprint(b)] || !got[attest.EKFingerprint(c)] {
		t.Fatalf("allow-list %v", got)
	}

	var buf bytes.Buffer
	if err := attest.WriteAllowList(&buf, got); err != nil {
		t.Fatal(err)
	}
	back, err := attest.ParseAllowList(&buf)
	if err != nil || len(back) != 3 {
		t.Fatalf("round trip: %v %v", back, err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if !slices.IsSorted(lines) {
		t.Fatalf("not sorted: %q", lines)
	}

	_, err = attest.ParseAllowList(strings.NewReader(hex.EncodeToString(a[:]) + "\n\nnot-a-fingerprint\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("bad line: %v", err)
	}
	empty, err := attest.ParseAllowList(strings.NewReader("# nothing\n\n"))
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty list: %v %v", empty, err)
	}
}

// ---- EK policy ----

func TestVerifyEKCertificateChain(t *testing.T) {
	m := tpmtest.NewManufacturer(t)
	ek := rsaKey(t, 2048)
	cert := m.IssueEKCert(t, &ek.PublicKey)
	wantFP, _ := attest.FingerprintEK(&ek.PublicKey)

	// The quirk the policy handles: Go refuses a real-shaped EK certificate.
	if len(cert.UnhandledCriticalExtensions) == 0 {
		t.Fatal("test EK certificate has no unhandled critical extension; it should look like a real one")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: m.Roots, Intermediates: m.Intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("plain x509 verification of the EK certificate passed; the SAN quirk is not exercised")
	}
	before := slices.Clone(cert.UnhandledCriticalExtensions)

	p := attest.Policy{ManufacturerRoots: m.Roots, ManufacturerIntermediates: m.Intermediates}
	for name, e := range map[string]attest.EK{
		"certificate only":     {Certificate: cert},
		"certificate and key":  {Certificate: cert, Public: &ek.PublicKey},
		"intermediate sent in": {Certificate: cert, Intermediates: []*x509.Certificate{m.Intermediate}},
	} {
		pol := p
		if name == "intermediate sent in" {
			pol.ManufacturerIntermediates = nil
		}
		fp, err := pol.VerifyEK(e)
		if err != nil || fp != wantFP {
			t.Errorf("%s: %s, %v; want %s", name, fp, err, wantFP)
		}
	}
	if !slices.EqualFunc(before, cert.UnhandledCriticalExtensions, func(a, b asn1.ObjectIdentifier) bool { return a.Equal(b) }) {
		t.Fatal("VerifyEK changed the caller's certificate")
	}

	// ECC EKs (the TCG's ECC P-256 template) verify too.
	eccEK, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := p.VerifyEK(attest.EK{Certificate: m.IssueEKCert(t, &eccEK.PublicKey)}); err != nil {
		t.Errorf("ECC EK: %v", err)
	}
}

func TestVerifyEKRefusals(t *testing.T) {
	m := tpmtest.NewManufacturer(t)
	rogue := tpmtest.NewNamedManufacturer(t, "Rogue Silicon")
	ek := rsaKey(t, 2048)
	fp, _ := attest.FingerprintEK(&ek.PublicKey)
	p := attest.Policy{ManufacturerRoots: m.Roots, ManufacturerIntermediates: m.Intermediates}

	t.Run("unknown root", func(t *testing.T) {
		_, err := p.VerifyEK(attest.EK{Certificate: rogue.IssueEKCert(t, &ek.PublicKey), Intermediates: []*x509.Certificate{rogue.Intermediate}})
		wantReason(t, err, attest.ReasonEKUntrusted)
		if !strings.Contains(err.Error(), "Rogue Silicon") || !strings.Contains(err.Error(), fp.String()) {
			t.Errorf("message does not name the issuer and fingerprint: %v", err)
		}
	})
	t.Run("missing intermediate", func(t *testing.T) {
		pol := attest.Policy{ManufacturerRoots: m.Roots}
		_, err := pol.VerifyEK(attest.EK{Certificate: m.IssueEKCert(t, &ek.PublicKey)})
		wantReason(t, err, attest.ReasonEKUntrusted)
	})
	t.Run("no roots configured", func(t *testing.T) {
		_, err := attest.Policy{}.VerifyEK(attest.EK{Certificate: m.IssueEKCert(t, &ek.PublicKey)})
		wantReason(t, err, attest.ReasonEKUntrusted)
	})
	t.Run("expired", func(t *testing.T) {
		pol := p
		pol.Now = func() time.Time { return time.Now().Add(11 * 365 * 24 * time.Hour) }
		_, err := pol.VerifyEK(attest.EK{Certificate: m.IssueEKCert(t, &ek.PublicKey)})
		wantReason(t, err, attest.ReasonEKUntrusted)
	})
	t.Run("other unhandled critical extension", func(t *testing.T) {
		c := m.IssueEKCertWith(t, &ek.PublicKey, func(c *x509.Certificate) {
			c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{5, 0}})
		})
		_, err := p.VerifyEK(attest.EK{Certificate: c})
		wantReason(t, err, attest.ReasonEKUntrusted)
	})
	t.Run("not on allow-list, no certificate", func(t *testing.T) {
		other := sha256.Sum256([]byte("someone else"))
		pol := attest.Policy{AllowedEKs: map[attest.EKFingerprint]bool{other: true, fp: false}}
		_, err := pol.VerifyEK(attest.EK{Public: &ek.PublicKey})
		wantReason(t, err, attest.ReasonEKNotAllowed)
		if !strings.Contains(err.Error(), fp.String()) {
			t.Errorf("message does not name the fingerprint: %v", err)
		}
	})
	t.Run("key does not match certificate", func(t *testing.T) {
		other := rsaKey(t, 2048)
		_, err := p.VerifyEK(attest.EK{Certificate: m.IssueEKCert(t, &ek.PublicKey), Public: &other.PublicKey})
		wantReason(t, err, attest.ReasonEKMismatch)
	})
	t.Run("weak key", func(t *testing.T) {
		weak := rsaKey(t, 1024)
		fpWeak, _ := attest.FingerprintEK(&weak.PublicKey)
		pol := attest.Policy{AllowedEKs: map[attest.EKFingerprint]bool{fpWeak: true}}
		_, err := pol.VerifyEK(attest.EK{Public: &weak.PublicKey})
		wantReason(t, err, attest.ReasonEKUnsupported)
		p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
		_, err = pol.VerifyEK(attest.EK{Public: &p224.PublicKey})
		wantReason(t, err, attest.ReasonEKUnsupported)
	})
	t.Run("nothing given", func(t *testing.T) {
		_, err := p.VerifyEK(attest.EK{})
		wantReason(t, err, attest.ReasonMalformed)
	})
}

func TestVerifyEKAllowList(t *testing.T) {
	ek := rsaKey(t, 2048)
	fp, _ := attest.FingerprintEK(&ek.PublicKey)
	list, err := attest.ParseAllowList(strings.NewReader(fp.String() + " # laptop-7\n"))
	if err != nil {
		t.Fatal(err)
	}
	pol := attest.Policy{AllowedEKs: list}
	got, err := pol.VerifyEK(attest.EK{Public: &ek.PublicKey})
	if err != nil || got != fp {
		t.Fatalf("allow-listed EK: %s %v", got, err)
	}
	// On the list, its certificate from an unknown manufacturer does not matter.
	rogue := tpmtest.NewNamedManufacturer(t, "Rogue Silicon")
	pol.ManufacturerRoots = tpmtest.NewManufacturer(t).Roots
	if _, err := pol.VerifyEK(attest.EK{Certificate: rogue.IssueEKCert(t, &ek.PublicKey)}); err != nil {
		t.Fatalf("allow-listed EK with an unknown certificate: %v", err)
	}
}

// ---- credential activation ----

func TestMakeCredentialShape(t *testing.T) {
	s := newSoftTPM(t)
	ek := rsaKey(t, 2048)
	ch1, sec1, err := attest.MakeCredential(&ek.PublicKey, s.akPublic)
	if err != nil {
		t.Fatal(err)
	}
	ch2, sec2, err := attest.MakeCredential(&ek.PublicKey, s.akPublic)
	if err != nil {
		t.Fatal(err)
	}
	if len(sec1) != 32 || bytes.Equal(sec1, sec2) || bytes.Equal(ch1.Credential, ch2.Credential) {
		t.Fatal("secrets are not fresh 32-byte values")
	}
	// TPM2B_ENCRYPTED_SECRET for RSA 2048: a size prefix and 256 bytes.
	if len(ch1.Secret) != 2+256 || int(ch1.Secret[0])<<8|int(ch1.Secret[1]) != 256 {
		t.Fatalf("encrypted secret of %d bytes", len(ch1.Secret))
	}
	if n := int(ch1.Credential[0])<<8 | int(ch1.Credential[1]); n != len(ch1.Credential)-2 {
		t.Fatalf("credential size prefix %d for %d bytes", n, len(ch1.Credential))
	}
	eccEK, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, _, err := attest.MakeCredential(&eccEK.PublicKey, s.akPublic); err != nil {
		t.Fatalf("ECC EK: %v", err)
	}
	if _, _, err := attest.MakeCredential(nil, s.akPublic); err == nil {
		t.Fatal("no EK accepted")
	}
	// High-range EK templates (AES-256, SHA-384) are not supported.
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, _, err = attest.MakeCredential(&p384.PublicKey, s.akPublic)
	wantReason(t, err, attest.ReasonEKUnsupported)
	_, _, err = attest.MakeCredential(&rsaKey(t, 3072).PublicKey, s.akPublic)
	wantReason(t, err, attest.ReasonEKUnsupported)
}

func TestMakeCredentialRefusesBadAK(t *testing.T) {
	ek := rsaKey(t, 2048)
	ak := rsaKey(t, 2048)
	with := func(edit func(*tpm2.TPMAObject)) []byte {
		a := akAttrs
		edit(&a)
		return tpm2.Marshal(rsaPublic(a, tpm2.TPMAlgSHA256, &ak.PublicKey))
	}
	cases := []struct {
		name   string
		public []byte
		want   attest.Reason
	}{
		{"unrestricted signing key", with(func(a *tpm2.TPMAObject) { a.Restricted = false }), attest.ReasonAKNotRestricted},
		{"storage key", with(func(a *tpm2.TPMAObject) { a.SignEncrypt = false; a.Decrypt = true }), attest.ReasonAKNotRestricted},
		{"sign and decrypt", with(func(a *tpm2.TPMAObject) { a.Decrypt = true }), attest.ReasonAKNotRestricted},
		{"not fixedTPM", with(func(a *tpm2.TPMAObject) { a.FixedTPM = false }), attest.ReasonAKExportable},
		{"not fixedParent", with(func(a *tpm2.TPMAObject) { a.FixedParent = false }), attest.ReasonAKExportable},
		{"imported", with(func(a *tpm2.TPMAObject) { a.SensitiveDataOrigin = false }), attest.ReasonAKExportable},
		{"SHA-1 name", tpm2.Marshal(rsaPublic(akAttrs, tpm2.TPMAlgSHA1, &ak.PublicKey)), attest.ReasonAKUnsupported},
		{"RSA 1024", tpm2.Marshal(rsaPublic(akAttrs, tpm2.TPMAlgSHA256, &rsaKey(t, 1024).PublicKey)), attest.ReasonAKUnsupported},
		{"trailing byte", append(with(func(*tpm2.TPMAObject) {}), 0), attest.ReasonMalformed},
		{"truncated", with(func(*tpm2.TPMAObject) {})[:40], attest.ReasonMalformed},
		{"empty", nil, attest.ReasonMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := attest.MakeCredential(&ek.PublicKey, c.public)
			wantReason(t, err, c.want)
		})
	}
	if _, err := attest.ParseAKPublic(with(func(*tpm2.TPMAObject) {})); err != nil {
		t.Fatalf("good AK refused: %v", err)
	}
}

func TestCheckActivation(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	if err := attest.CheckActivation(secret, bytes.Clone(secret)); err != nil {
		t.Fatal(err)
	}
	wrong := bytes.Clone(secret)
	wrong[31] ^= 1
	for _, got := range [][]byte{wrong, nil, secret[:31], append(bytes.Clone(secret), 0)} {
		wantReason(t, attest.CheckActivation(secret, got), attest.ReasonActivation)
	}
	wantReason(t, attest.CheckActivation(nil, nil), attest.ReasonActivation)
}

// ---- key certification (software-made structures) ----

func TestVerifyKeyCertificationSoft(t *testing.T) {
	qd := attest.QualifyingData([]byte("nonce"), bytes.Repeat([]byte{9}, 32))
	for name, s := range map[string]*softTPM{"RSA AK": newSoftTPM(t), "ECC AK": newSoftECCTPM(t)} {
		t.Run(name, func(t *testing.T) {
			c := s.certify(t, qd, certifyOpts{})
			pub, err := attest.VerifyKeyCertification(c.akPublic, c.keyPublic, c.certifyInfo, c.signature, qd)
			if err != nil {
				t.Fatal(err)
			}
			if !c.key.PublicKey.Equal(pub) {
				t.Fatal("returned key is not the certified key")
			}
		})
	}
}

func TestVerifyKeyCertificationRefusals(t *testing.T) {
	s := newSoftTPM(t)
	qd := attest.QualifyingData([]byte("nonce"), bytes.Repeat([]byte{9}, 32))
	attrs := func(edit func(*tpm2.TPMAObject)) *tpm2.TPMAObject {
		a := deviceAttrs
		edit(&a)
		return &a
	}
	other := s.certify(t, qd, certifyOpts{})
	stranger := rsaKey(t, 2048)
	unrestricted := func() []byte {
		a := akAttrs
		a.Restricted = false
		return tpm2.Marshal(rsaPublic(a, tpm2.TPMAlgSHA256, s.akKey.Public().(*rsa.PublicKey)))
	}()

	cases := []struct {
		name string
		o    certifyOpts
		edit func(*certification)
		qd   []byte
		want attest.Reason
	}{
		{name: "replayed qualifying data", qd: attest.QualifyingData([]byte("old nonce"), bytes.Repeat([]byte{9}, 32)), want: attest.ReasonQualifyingData},
		{name: "other WireGuard key", qd: attest.QualifyingData([]byte("nonce"), bytes.Repeat([]byte{8}, 32)), want: attest.ReasonQualifyingData},
		{name: "no expected qualifying data", qd: []byte{}, want: attest.ReasonQualifyingData},
		{name: "key not fixedTPM", o: certifyOpts{attrs: attrs(func(a *tpm2.TPMAObject) { a.FixedTPM = false })}, want: attest.ReasonKeyExportable},
		{name: "key not fixedParent", o: certifyOpts{attrs: attrs(func(a *tpm2.TPMAObject) { a.FixedTPM, a.FixedParent = false, false })}, want: attest.ReasonKeyExportable},
		{name: "imported key", o: certifyOpts{attrs: attrs(func(a *tpm2.TPMAObject) { a.SensitiveDataOrigin = false })}, want: attest.ReasonKeyExportable},
		{name: "restricted key", o: certifyOpts{attrs: attrs(func(a *tpm2.TPMAObject) { a.Restricted = true })}, want: attest.ReasonKeyRestricted},
		{name: "decrypt-only key", o: certifyOpts{attrs: attrs(func(a *tpm2.TPMAObject) { a.SignEncrypt = false; a.Decrypt = true })}, want: attest.ReasonKeyNotSigning},
		{name: "P-384 key", o: certifyOpts{curve: elliptic.P384()}, want: attest.ReasonKeyUnsupported},
		{name: "signed by another key", o: certifyOpts{signer: stranger}, want: attest.ReasonBadSignature},
		{name: "certifyInfo altered", edit: func(c *certification) { c.certifyInfo[len(c.certifyInfo)-1] ^= 1 }, want: attest.ReasonBadSignature},
		{name: "not TPM generated", o: certifyOpts{magic: 0x12345678}, want: attest.ReasonNotTPMGenerated},
		{name: "creation attestation", o: certifyOpts{typ: tpm2.TPMSTAttestCreation}, want: attest.ReasonAttestationType},
		{name: "key public swapped", edit: func(c *certification) { c.keyPublic = other.keyPublic }, want: attest.ReasonNameMismatch},
		{name: "AK public swapped", edit: func(c *certification) {
			c.akPublic = tpm2.Marshal(rsaPublic(akAttrs, tpm2.TPMAlgSHA256, &stranger.PublicKey))
		}, want: attest.ReasonBadSignature},
		{name: "unrestricted AK", edit: func(c *certification) { c.akPublic = unrestricted }, want: attest.ReasonAKNotRestricted},
		{name: "signature with trailing data", edit: func(c *certification) { c.signature = append(c.signature, 0) }, want: attest.ReasonMalformed},
		{name: "key public with trailing data", edit: func(c *certification) { c.keyPublic = append(c.keyPublic, 0) }, want: attest.ReasonMalformed},
		{name: "empty signature", edit: func(c *certification) { c.signature = nil }, want: attest.ReasonMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cert := s.certify(t, qd, c.o)
			if c.edit != nil {
				c.edit(&cert)
			}
			want := qd
			if c.qd != nil {
				want = c.qd
			}
			_, err := attest.VerifyKeyCertification(cert.akPublic, cert.keyPublic, cert.certifyInfo, cert.signature, want)
			wantReason(t, err, c.want)
		})
	}
}

func TestQualifyingData(t *testing.T) {
	nonce, wg := []byte("n"), []byte("w")
	want := sha256.Sum256([]byte("nw"))
	if !bytes.Equal(attest.QualifyingData(nonce, wg), want[:]) {
		t.Fatal("QualifyingData is not SHA-256(nonce ‖ wg)")
	}
}

func TestErrorForm(t *testing.T) {
	inner := errors.New("inner")
	_, err := attest.Policy{}.VerifyEK(attest.EK{})
	var e *attest.Error
	if !errors.As(err, &e) || e.Reason != attest.ReasonMalformed {
		t.Fatalf("%T %v", err, err)
	}
	e2 := &attest.Error{Reason: attest.ReasonBadSignature, Err: fmt.Errorf("d: %w", inner)}
	if !errors.Is(e2, inner) || !errors.Is(e2, attest.ReasonBadSignature) || errors.Is(e2, attest.ReasonMalformed) {
		t.Fatal("errors.Is")
	}
	if got := e2.Error(); !strings.HasPrefix(got, "tpm attestation refused: ") || !strings.Contains(got, ": d: inner") {
		t.Fatalf("message %q", got)
	}
	if attest.ReasonOf(inner) != "" || attest.Reason("x").Error() == "" {
		t.Fatal("ReasonOf")
	}
}

var _ crypto.Signer = (*rsa.PrivateKey)(nil)

// FuzzVerifyKeyCertification: the device key's public area, the
// certifyInfo and the AK's signature come from the network. Nothing
// panics, every refusal has a reason, and only the certifyInfo the AK
// signed, naming the key it certified, is accepted.
//
// Every process (each fuzz worker runs this set-up again) has a soft TPM
// with keys of its own: the fuzzer edits this process's genuine
// certification (no edits is the genuine one, which must verify).
func FuzzVerifyKeyCertification(f *testing.F) {
	s := newSoftTPM(f)
	qd := attest.QualifyingData([]byte("nonce"), []byte("wg"))
	c := s.certify(f, qd, certifyOpts{})
	pub, err := attest.VerifyKeyCertification(c.akPublic, c.keyPublic, c.certifyInfo, c.signature, qd)
	if err != nil {
		f.Fatalf("the genuine certification is refused: %v", err)
	}
	if !c.key.PublicKey.Equal(pub) {
		f.Fatal("the genuine certification returns another key")
	}
	f.Add([]byte(nil), []byte(nil), []byte(nil))
	f.Add(fuzzedit.Xor(len(c.keyPublic)-1, 1), []byte(nil), []byte(nil))               // the key's point
	f.Add(fuzzedit.Xor(7, 0x02), []byte(nil), []byte(nil))                             // fixedTPM cleared
	f.Add([]byte(nil), fuzzedit.Xor(0, 1), []byte(nil))                                // the magic: no longer what the AK signed
	f.Add([]byte(nil), fuzzedit.Xor(len(c.certifyInfo)-1, 1), []byte(nil))             // the qualified name: likewise
	f.Add([]byte(nil), []byte(nil), fuzzedit.Xor(len(c.signature)-1, 1))               // the signature value
	f.Add([]byte(nil), []byte(nil), append(fuzzedit.Xor(0, 1), fuzzedit.Xor(3, 1)...)) // its algorithms
	f.Add(fuzzedit.Cut(len(c.keyPublic)/2), []byte(nil), []byte(nil))
	f.Add([]byte(nil), fuzzedit.Cut(len(c.certifyInfo)-1), []byte(nil))
	f.Add([]byte(nil), []byte(nil), fuzzedit.Cut(len(c.signature)-1))
	f.Add(fuzzedit.Insert(len(c.keyPublic), 0), []byte(nil), []byte(nil))
	f.Add([]byte(nil), fuzzedit.Insert(len(c.certifyInfo), 0), []byte(nil))
	f.Add([]byte(nil), []byte(nil), fuzzedit.Insert(len(c.signature), 0))
	f.Fuzz(func(t *testing.T, keyEdits, infoEdits, sigEdits []byte) {
		keyPublic := fuzzedit.Apply(c.keyPublic, keyEdits)
		certifyInfo := fuzzedit.Apply(c.certifyInfo, infoEdits)
		signature := fuzzedit.Apply(c.signature, sigEdits)
		pub, err := attest.VerifyKeyCertification(c.akPublic, keyPublic, certifyInfo, signature, qd)
		if err == nil && !bytes.Equal(certifyInfo, c.certifyInfo) {
			t.Fatalf("accepted altered certifyInfo (key %v)", pub)
		}
		if err == nil && !c.key.PublicKey.Equal(pub) {
			t.Fatalf("accepted a key the AK did not certify: %v", pub)
		}
		if err != nil && attest.ReasonOf(err) == "" {
			t.Fatalf("untyped error %v", err)
		}
	})
}
