//go:build tpmsimulator

package attest_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/agent/tpmkey"
	"github.com/certmesh/certmesh/ca/attest"
	"github.com/certmesh/certmesh/tstest/tpmtest"
)

// The whole attestation against the Microsoft reference TPM simulator:
//
//	go test -tags tpmsimulator ./ca/attest
//
// The agent side is agent/tpmkey on the simulator; the CA side is this
// package. What crosses between them is only bytes (DER, TPM structures),
// as on the wire.

var ctx = context.Background()

type enrollment struct {
	tpm    *tpmtest.TPM
	m      *tpmtest.Manufacturer
	policy attest.Policy
	ek     *tpmkey.EK
	ekCert *x509.Certificate // as the CA parsed it from the agent's DER
	nonce  []byte
	wgPub  []byte
}

func newEnrollment(t *testing.T) *enrollment {
	t.Helper()
	e := &enrollment{tpm: tpmtest.New(t), m: tpmtest.NewManufacturer(t)}
	ek, err := e.tpm.EK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.ek = ek
	// The simulator has no EK certificate: its manufacturer issues one.
	der := e.m.IssueEKCert(t, ek.Public).Raw
	if e.ekCert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	e.policy = attest.Policy{ManufacturerRoots: e.m.Roots, ManufacturerIntermediates: e.m.Intermediates}
	e.nonce = random(t, 32)
	e.wgPub = random(t, 32)
	return e
}

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// activate runs the credential round trip and returns the AK public area
// the CA has bound to the EK.
func (e *enrollment) activate(t *testing.T) []byte {
	t.Helper()
	akPub, err := e.tpm.AKPublic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch, want, err := attest.MakeCredential(e.ekCert.PublicKey, akPub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.tpm.ActivateCredential(ctx, ch.Credential, ch.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := attest.CheckActivation(want, got); err != nil {
		t.Fatal(err)
	}
	return akPub
}

func verify(a tpmkey.Attestation, qd []byte) (crypto.PublicKey, error) {
	return attest.VerifyKeyCertification(a.AKPublic, a.KeyPublic, a.CertifyInfo, a.Signature, qd)
}

func TestSimEnrollHappyPath(t *testing.T) {
	e := newEnrollment(t)

	// 1. The EK is genuine: its certificate chains to the manufacturer.
	fp, err := e.policy.VerifyEK(attest.EK{Certificate: e.ekCert})
	if err != nil {
		t.Fatal(err)
	}
	if fp.String() != e.ek.Fingerprint.String() {
		t.Fatalf("CA fingerprint %s, agent fingerprint %s", fp, e.ek.Fingerprint)
	}

	// 2. The AK is in the TPM that holds the EK.
	akPub := e.activate(t)

	// 3. The device key is certified by that AK over SHA-256(nonce ‖ wg).
	qd := attest.QualifyingData(e.nonce, e.wgPub)
	if !bytes.Equal(qd, tpmkey.QualifyingData(e.nonce, e.wgPub)) {
		t.Fatal("agent and CA compute different qualifying data")
	}
	dk, err := e.tpm.CreateDeviceKey(ctx, qd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dk.Attestation.AKPublic, akPub) {
		t.Fatal("the key was certified by another AK than the activated one")
	}
	pub, err := verify(dk.Attestation, qd)
	if err != nil {
		t.Fatal(err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() || !ec.Equal(dk.Signer.Public()) {
		t.Fatal("the CA's device key is not the TPM signer's key")
	}

	// 4. What the TPM key signs verifies with the key the CA will certify:
	// a digest, and a CSR.
	digest := sha256.Sum256([]byte("renewal request"))
	sig, err := dk.Signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(ec, digest[:], sig) {
		t.Fatal("TPM signature does not verify with the certified key")
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "laptop"}}, dk.Signer)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil || csr.CheckSignature() != nil || !ec.Equal(csr.PublicKey) {
		t.Fatalf("CSR from the TPM key: %v", err)
	}
	// A CSR signed by any other key does not carry the certified key.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, other)
	csr2, _ := x509.ParseCertificateRequest(der)
	if ec.Equal(csr2.PublicKey) {
		t.Fatal("a software CSR matched the TPM key")
	}

	// 5. After an agent restart and a reboot, the same key signs, and a
	// renewal recertifies it over a new nonce.
	if err := e.tpm.Sim.Reboot(); err != nil {
		t.Fatal(err)
	}
	again := e.tpm.Reopen(t)
	s, err := again.DeviceSigner(ctx)
	if err != nil || !ec.Equal(s.Public()) {
		t.Fatalf("device key after restart: %v", err)
	}
	qd2 := attest.QualifyingData(random(t, 32), e.wgPub)
	a2, err := again.CertifyDeviceKey(ctx, qd2)
	if err != nil {
		t.Fatal(err)
	}
	if pub2, err := verify(a2, qd2); err != nil || !ec.Equal(pub2) {
		t.Fatalf("recertification: %v", err)
	}
}

func TestSimEKOnAllowList(t *testing.T) {
	e := newEnrollment(t)
	list, err := attest.ParseAllowList(strings.NewReader("# MDM export\n" + e.ek.Fingerprint.String() + "  # this laptop\n"))
	if err != nil {
		t.Fatal(err)
	}
	fp, err := attest.Policy{AllowedEKs: list}.VerifyEK(attest.EK{Public: e.ek.Public})
	if err != nil || fp.String() != e.ek.Fingerprint.String() {
		t.Fatalf("allow-listed EK: %v", err)
	}
	// The CA then binds the AK to that EK the same way.
	akPub, _ := e.tpm.AKPublic(ctx)
	ch, want, err := attest.MakeCredential(e.ek.Public, akPub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.tpm.ActivateCredential(ctx, ch.Credential, ch.Secret)
	if err != nil || attest.CheckActivation(want, got) != nil {
		t.Fatalf("activation: %v", err)
	}
}

func TestSimRejectEKFromUnknownRoot(t *testing.T) {
	e := newEnrollment(t)
	rogue := tpmtest.NewNamedManufacturer(t, "Rogue Silicon")
	cert := rogue.IssueEKCert(t, e.ek.Public)
	_, err := e.policy.VerifyEK(attest.EK{Certificate: cert, Intermediates: []*x509.Certificate{rogue.Intermediate}})
	wantReason(t, err, attest.ReasonEKUntrusted)
	t.Log(err)
}

func TestSimRejectEKNotOnAllowList(t *testing.T) {
	e := newEnrollment(t)
	someoneElse := sha256.Sum256([]byte("another laptop"))
	pol := attest.Policy{AllowedEKs: map[attest.EKFingerprint]bool{someoneElse: true}}
	_, err := pol.VerifyEK(attest.EK{Public: e.ek.Public})
	wantReason(t, err, attest.ReasonEKNotAllowed)
	t.Log(err)
}

func TestSimRejectWrongActivationSecret(t *testing.T) {
	e := newEnrollment(t)
	akPub, _ := e.tpm.AKPublic(ctx)
	ch, want, err := attest.MakeCredential(e.ekCert.PublicKey, akPub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.tpm.ActivateCredential(ctx, ch.Credential, ch.Secret)
	if err != nil {
		t.Fatal(err)
	}
	wrong := bytes.Clone(got)
	wrong[0] ^= 0x80
	wantReason(t, attest.CheckActivation(want, wrong), attest.ReasonActivation)
	// A secret from an earlier challenge is wrong too.
	_, want2, _ := attest.MakeCredential(e.ekCert.PublicKey, akPub)
	wantReason(t, attest.CheckActivation(want2, got), attest.ReasonActivation)
}

// The TPM itself refuses to recover a secret that was not made for its EK
// and this AK, so a relayed or mismatched challenge never yields the secret.
func TestSimActivationIsBoundToEKAndAK(t *testing.T) {
	e := newEnrollment(t)
	akPub, _ := e.tpm.AKPublic(ctx)

	t.Run("challenge for another EK", func(t *testing.T) {
		otherEK := rsaKey(t, 2048)
		ch, _, err := attest.MakeCredential(&otherEK.PublicKey, akPub)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.tpm.ActivateCredential(ctx, ch.Credential, ch.Secret); err == nil {
			t.Fatal("the TPM activated a credential made for another EK")
		}
	})
	t.Run("challenge for another AK in the same TPM", func(t *testing.T) {
		other := e.tpm.Other(t)
		otherAK, err := other.AKPublic(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(otherAK, akPub) {
			t.Fatal("two AKs are the same")
		}
		ch, _, err := attest.MakeCredential(e.ekCert.PublicKey, otherAK)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.tpm.ActivateCredential(ctx, ch.Credential, ch.Secret); err == nil {
			t.Fatal("the AK activated a credential made for another AK")
		}
		// ...which the right AK does activate.
		if _, err := other.ActivateCredential(ctx, ch.Credential, ch.Secret); err != nil {
			t.Fatalf("the other AK: %v", err)
		}
	})
	t.Run("altered credential", func(t *testing.T) {
		ch, _, err := attest.MakeCredential(e.ekCert.PublicKey, akPub)
		if err != nil {
			t.Fatal(err)
		}
		ch.Credential[len(ch.Credential)-1] ^= 1
		if _, err := e.tpm.ActivateCredential(ctx, ch.Credential, ch.Secret); err == nil {
			t.Fatal("an altered credential activated")
		}
	})
}

func TestSimRejectUnrestrictedAK(t *testing.T) {
	e := newEnrollment(t)
	unrestricted := e.tpm.UnrestrictedSigningKey(t)
	pub := unrestricted.Public

	// The CA refuses to bind it to the EK at all...
	_, _, err := attest.MakeCredential(e.ekCert.PublicKey, pub)
	wantReason(t, err, attest.ReasonAKNotRestricted)
	t.Log(err)

	// ...because with it, anyone can forge a "TPM certification" of a key
	// held in software: TPM2_Sign over a made-up TPMS_ATTEST.
	qd := attest.QualifyingData(e.nonce, e.wgPub)
	soft, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyPub := tpmtest.SoftwareKeyPublic(t, &soft.PublicKey)
	ci, sig := e.tpm.ForgeCertification(t, unrestricted, keyPub, qd)
	_, err = attest.VerifyKeyCertification(pub, keyPub, ci, sig, qd)
	wantReason(t, err, attest.ReasonAKNotRestricted)

	// A real, restricted AK refuses to sign that digest, and the forgery
	// does not pass as the real AK's.
	digest := sha256.Sum256(ci)
	if err := e.tpm.SignWithAK(t, digest[:]); err == nil {
		t.Fatal("the restricted AK signed an external digest")
	}
	akPub := e.activate(t)
	_, err = attest.VerifyKeyCertification(akPub, keyPub, ci, sig, qd)
	wantReason(t, err, attest.ReasonBadSignature)

	// And a genuine TPM2_Certify by the unrestricted key is refused too.
	exportable := e.tpm.ExportableKey(t)
	ci, sig = e.tpm.Certify(t, exportable, unrestricted, qd)
	_, err = attest.VerifyKeyCertification(pub, exportable.Public, ci, sig, qd)
	wantReason(t, err, attest.ReasonAKNotRestricted)
}

func TestSimRejectReplayedQualifyingData(t *testing.T) {
	e := newEnrollment(t)
	akPub := e.activate(t)
	old := attest.QualifyingData(random(t, 32), e.wgPub)
	dk, err := e.tpm.CreateDeviceKey(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dk.Attestation.AKPublic, akPub) {
		t.Fatal("AK changed")
	}
	// The CA's new nonce: the old attestation is a replay.
	qd := attest.QualifyingData(e.nonce, e.wgPub)
	_, err = verify(dk.Attestation, qd)
	wantReason(t, err, attest.ReasonQualifyingData)
	t.Log(err)
	// Same nonce, another WireGuard key: refused as well.
	_, err = verify(dk.Attestation, attest.QualifyingData(e.nonce, random(t, 32)))
	wantReason(t, err, attest.ReasonQualifyingData)
	// The agent recertifying over the new data passes.
	a, err := e.tpm.CertifyDeviceKey(ctx, qd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify(a, qd); err != nil {
		t.Fatal(err)
	}
}

func TestSimRejectExportableKey(t *testing.T) {
	e := newEnrollment(t)
	e.activate(t)
	qd := attest.QualifyingData(e.nonce, e.wgPub)
	// A genuine TPM2_Certify by the real AK, of a key without fixedTPM and
	// fixedParent.
	a := e.tpm.ExportableDeviceKey(t, qd)
	_, err := verify(a, qd)
	wantReason(t, err, attest.ReasonKeyExportable)
	if !strings.Contains(err.Error(), "fixedTPM") {
		t.Fatalf("message does not name the attribute: %v", err)
	}
	t.Log(err)
}

func TestSimRejectSignatureByOtherKey(t *testing.T) {
	e := newEnrollment(t)
	akPub := e.activate(t)
	qd := attest.QualifyingData(e.nonce, e.wgPub)

	// Another AK in the same TPM, not the one bound to the EK, certifies a
	// key over the right data.
	other := e.tpm.Other(t)
	dk, err := other.CreateDeviceKey(ctx, qd)
	if err != nil {
		t.Fatal(err)
	}
	a := dk.Attestation
	a.AKPublic = akPub
	_, err = verify(a, qd)
	wantReason(t, err, attest.ReasonBadSignature)
	t.Log(err)

	// The real AK's certification, altered after signing.
	dk, err = e.tpm.CreateDeviceKey(ctx, qd)
	if err != nil {
		t.Fatal(err)
	}
	a = dk.Attestation
	a.CertifyInfo = bytes.Clone(a.CertifyInfo)
	a.CertifyInfo[len(a.CertifyInfo)-1] ^= 1
	_, err = verify(a, qd)
	wantReason(t, err, attest.ReasonBadSignature)
}

func TestSimRejectNameMismatch(t *testing.T) {
	e := newEnrollment(t)
	e.activate(t)
	qd := attest.QualifyingData(e.nonce, e.wgPub)
	first, err := e.tpm.CreateDeviceKey(ctx, qd)
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.tpm.CreateDeviceKey(ctx, qd)
	if err != nil {
		t.Fatal(err)
	}
	// The certification of the first key, presented with the second key's
	// public area (both genuine keys of this TPM).
	a := first.Attestation
	a.KeyPublic = second.Attestation.KeyPublic
	_, err = verify(a, qd)
	wantReason(t, err, attest.ReasonNameMismatch)
	t.Log(err)
	// Or with a software key's.
	soft, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a.KeyPublic = tpmtest.SoftwareKeyPublic(t, &soft.PublicKey)
	_, err = verify(a, qd)
	wantReason(t, err, attest.ReasonNameMismatch)
}

func TestSimRejectQuoteAsCertification(t *testing.T) {
	e := newEnrollment(t)
	akPub := e.activate(t)
	qd := attest.QualifyingData(e.nonce, e.wgPub)
	dk, err := e.tpm.CreateDeviceKey(ctx, qd)
	if err != nil {
		t.Fatal(err)
	}
	// A PCR quote by the real AK over the right data is a TPM statement,
	// but not about the key.
	quote, sig := e.tpm.QuoteWithAK(t, qd)
	_, err = attest.VerifyKeyCertification(akPub, dk.Attestation.KeyPublic, quote, sig, qd)
	wantReason(t, err, attest.ReasonAttestationType)
}
