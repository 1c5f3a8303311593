//go:build tpmsimulator

package tpmtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"testing"

	legacy "github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/certmesh/certmesh/agent/tpmkey"
)

// What follows makes, with go-tpm directly, the objects that tpmkey never
// makes and the CA must refuse. All are created under the SRK that tpmkey
// uses, in the same simulator.

var certifyScheme = legacy.SigScheme{Alg: legacy.AlgRSASSA, Hash: legacy.AlgSHA256}

// srk makes sure the AK (and so the SRK at tpmkey.SRKHandle) exists.
func (f *TPM) srk(t testing.TB) tpmutil.Handle {
	t.Helper()
	if _, err := f.AKPublic(context.Background()); err != nil {
		t.Fatalf("tpmtest: AK: %v", err)
	}
	return tpmutil.Handle(tpmkey.SRKHandle)
}

// Object is a key created under the SRK and not loaded: the simulator has
// room for only three loaded objects, so helpers load what they use and
// flush it at once.
type Object struct {
	// Public is the object's public area (TPMT_PUBLIC).
	Public  []byte
	private []byte
}

func (f *TPM) create(t testing.TB, tmpl legacy.Public) Object {
	t.Helper()
	priv, pub, _, _, _, err := legacy.CreateKey(f.RW(), f.srk(t), legacy.PCRSelection{}, "", "", tmpl)
	if err != nil {
		t.Fatalf("tpmtest: TPM2_Create: %v", err)
	}
	return Object{Public: pub, private: priv}
}

// with loads o, runs fn with its handle and flushes it.
func (f *TPM) with(t testing.TB, o Object, fn func(tpmutil.Handle)) {
	t.Helper()
	h, _, err := legacy.Load(f.RW(), f.srk(t), "", o.Public, o.private)
	if err != nil {
		t.Fatalf("tpmtest: TPM2_Load: %v", err)
	}
	defer func() {
		if err := legacy.FlushContext(f.RW(), h); err != nil {
			t.Errorf("tpmtest: flush: %v", err)
		}
	}()
	fn(h)
}

// UnrestrictedSigningKey creates an RSA 2048 signing key that is TPM-bound
// but NOT restricted: it signs any digest, including one of a forged
// TPMS_ATTEST. Its public area is what an attacker would present as "AK".
func (f *TPM) UnrestrictedSigningKey(t testing.TB) Object {
	t.Helper()
	return f.create(t, legacy.Public{
		Type:    legacy.AlgRSA,
		NameAlg: legacy.AlgSHA256,
		Attributes: legacy.FlagSign | legacy.FlagFixedTPM | legacy.FlagFixedParent |
			legacy.FlagSensitiveDataOrigin | legacy.FlagUserWithAuth,
		RSAParameters: &legacy.RSAParams{
			Sign:    &legacy.SigScheme{Alg: legacy.AlgRSASSA, Hash: legacy.AlgSHA256},
			KeyBits: 2048,
		},
	})
}

// ExportableKey creates an ECC P-256 signing key with fixedTPM and
// fixedParent clear (a key that may be duplicated out of the TPM).
func (f *TPM) ExportableKey(t testing.TB) Object {
	t.Helper()
	return f.create(t, legacy.Public{
		Type:       legacy.AlgECC,
		NameAlg:    legacy.AlgSHA256,
		Attributes: legacy.FlagSign | legacy.FlagSensitiveDataOrigin | legacy.FlagUserWithAuth,
		ECCParameters: &legacy.ECCParams{
			Sign:    &legacy.SigScheme{Alg: legacy.AlgECDSA, Hash: legacy.AlgSHA256},
			CurveID: legacy.CurveNISTP256,
			Point:   legacy.ECPoint{XRaw: make([]byte, 32), YRaw: make([]byte, 32)},
		},
	})
}

// AK is tpmkey's AK as an Object (from its blobs in the state dir).
func (f *TPM) AK(t testing.TB) Object {
	t.Helper()
	pub, priv, err := f.AKBlobs(context.Background())
	if err != nil {
		t.Fatalf("tpmtest: AK blobs: %v", err)
	}
	// AKBlobs carry tpm2-tools' size prefixes; go-tpm adds its own.
	return Object{Public: pub[2:], private: priv[2:]}
}

// Certify runs TPM2_Certify of object by signer over qualifyingData and
// returns the TPMS_ATTEST and the TPMT_SIGNATURE.
func (f *TPM) Certify(t testing.TB, object, signer Object, qualifyingData []byte) (certifyInfo, signature []byte) {
	t.Helper()
	f.with(t, object, func(oh tpmutil.Handle) {
		f.with(t, signer, func(sh tpmutil.Handle) {
			var err error
			certifyInfo, signature, err = legacy.CertifyEx(f.RW(), "", "", oh, sh, qualifyingData, certifyScheme)
			if err != nil {
				t.Fatalf("tpmtest: TPM2_Certify: %v", err)
			}
		})
	})
	return certifyInfo, signature
}

// ExportableDeviceKey creates an exportable key (see ExportableKey) and
// has the real AK certify it over qualifyingData: a genuine TPM statement
// about a key that can leave the TPM.
func (f *TPM) ExportableDeviceKey(t testing.TB, qualifyingData []byte) tpmkey.Attestation {
	t.Helper()
	key := f.ExportableKey(t)
	ci, sig := f.Certify(t, key, f.AK(t), qualifyingData)
	akPub, err := f.AKPublic(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tpmkey.Attestation{AKPublic: akPub, KeyPublic: key.Public, CertifyInfo: ci, Signature: sig}
}

// QuoteWithAK has the real AK quote PCR 0 (SHA-256 bank) over
// qualifyingData: a genuine TPM statement, but not a key certification.
func (f *TPM) QuoteWithAK(t testing.TB, qualifyingData []byte) (quote, signature []byte) {
	t.Helper()
	f.with(t, f.AK(t), func(h tpmutil.Handle) {
		q, sig, err := legacy.Quote(f.RW(), h, "", "", qualifyingData, legacy.PCRSelection{Hash: legacy.AlgSHA256, PCRs: []int{0}}, legacy.AlgNull)
		if err != nil {
			t.Fatalf("tpmtest: TPM2_Quote: %v", err)
		}
		quote, signature = q, rsaSignature(sig.RSA.Signature)
	})
	return quote, signature
}

func rsaSignature(sig []byte) []byte {
	return tpm2.Marshal(tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgRSASSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{
			Hash: tpm2.TPMAlgSHA256,
			Sig:  tpm2.TPM2BPublicKeyRSA{Buffer: sig},
		}),
	})
}

// SoftwareKeyPublic is a TPMT_PUBLIC for a key the attacker holds in
// software, claiming every attribute of a TPM-bound device key.
func SoftwareKeyPublic(t testing.TB, key *ecdsa.PublicKey) []byte {
	t.Helper()
	ecdh, err := key.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	raw := ecdh.Bytes() // 0x04 ‖ X ‖ Y
	pub := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: raw[33:]},
		}),
	}
	return tpm2.Marshal(pub)
}

// ForgeCertification builds a TPMS_ATTEST that claims a TPM2_Certify of
// keyPublic over qualifyingData and signs it with TPM2_Sign using signer.
// A restricted key (a real AK) refuses to sign it; an unrestricted one
// does. That is the forgery the CA's AK checks exist for.
func (f *TPM) ForgeCertification(t testing.TB, signer Object, keyPublic, qualifyingData []byte) (certifyInfo, signature []byte) {
	t.Helper()
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](keyPublic)
	if err != nil {
		t.Fatal(err)
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		t.Fatal(err)
	}
	att := tpm2.TPMSAttest{
		Magic:           tpm2.TPMGeneratedValue,
		Type:            tpm2.TPMSTAttestCertify,
		QualifiedSigner: tpm2.TPM2BName{Buffer: name.Buffer},
		ExtraData:       tpm2.TPM2BData{Buffer: qualifyingData},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{
			Name:          *name,
			QualifiedName: *name,
		}),
	}
	certifyInfo = tpm2.Marshal(att)
	digest := sha256.Sum256(certifyInfo)
	f.with(t, signer, func(h tpmutil.Handle) {
		sig, err := legacy.Sign(f.RW(), h, "", digest[:], nil, &certifyScheme)
		if err != nil {
			t.Fatalf("tpmtest: TPM2_Sign of the forged attestation: %v", err)
		}
		signature = rsaSignature(sig.RSA.Signature)
	})
	return certifyInfo, signature
}

// SignWithAK tries TPM2_Sign of an external digest with the real AK. A
// restricted key refuses a digest without a ticket; the error is returned.
func (f *TPM) SignWithAK(t testing.TB, digest []byte) (err error) {
	t.Helper()
	f.with(t, f.AK(t), func(h tpmutil.Handle) {
		_, err = legacy.Sign(f.RW(), h, "", digest, nil, &certifyScheme)
	})
	return err
}
