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

func (f *TPM) createAndLoad(t testing.TB, tmpl legacy.Public) (tpmutil.Handle, []byte) {
	t.Helper()
	srk := f.srk(t)
	priv, pub, _, _, _, err := legacy.CreateKey(f.RW(), srk, legacy.PCRSelection{}, "", "", tmpl)
	if err != nil {
		t.Fatalf("tpmtest: TPM2_Create: %v", err)
	}
	h, _, err := legacy.Load(f.RW(), srk, "", pub, priv)
	if err != nil {
		t.Fatalf("tpmtest: TPM2_Load: %v", err)
	}
	t.Cleanup(func() { _ = legacy.FlushContext(f.RW(), h) })
	return h, pub
}

// UnrestrictedSigningKey creates and loads an RSA 2048 signing key that is
// TPM-bound but NOT restricted: it signs any digest, including one of a
// forged TPMS_ATTEST. It returns the handle and the public area
// (TPMT_PUBLIC) to present as an "AK".
func (f *TPM) UnrestrictedSigningKey(t testing.TB) (tpmutil.Handle, []byte) {
	t.Helper()
	return f.createAndLoad(t, legacy.Public{
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

// ExportableKey creates and loads an ECC P-256 signing key with fixedTPM
// and fixedParent clear (a key that may be duplicated out of the TPM).
func (f *TPM) ExportableKey(t testing.TB) (tpmutil.Handle, []byte) {
	t.Helper()
	return f.createAndLoad(t, legacy.Public{
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

// LoadAK loads tpmkey's AK with go-tpm (from its blobs in the state dir)
// and returns its handle.
func (f *TPM) LoadAK(t testing.TB) tpmutil.Handle {
	t.Helper()
	srk := f.srk(t)
	pub, priv, err := f.AKBlobs(context.Background())
	if err != nil {
		t.Fatalf("tpmtest: AK blobs: %v", err)
	}
	// AKBlobs carry tpm2-tools' size prefixes; go-tpm adds its own.
	h, _, err := legacy.Load(f.RW(), srk, "", pub[2:], priv[2:])
	if err != nil {
		t.Fatalf("tpmtest: loading the AK: %v", err)
	}
	t.Cleanup(func() { _ = legacy.FlushContext(f.RW(), h) })
	return h
}

// Certify runs TPM2_Certify of object by signer over qualifyingData and
// returns the TPMS_ATTEST and the TPMT_SIGNATURE.
func (f *TPM) Certify(t testing.TB, object, signer tpmutil.Handle, qualifyingData []byte) (certifyInfo, signature []byte) {
	t.Helper()
	ci, sig, err := legacy.CertifyEx(f.RW(), "", "", object, signer, qualifyingData, certifyScheme)
	if err != nil {
		t.Fatalf("tpmtest: TPM2_Certify: %v", err)
	}
	return ci, sig
}

// ExportableDeviceKey creates an exportable key (see ExportableKey) and
// has the real AK certify it over qualifyingData: a genuine TPM statement
// about a key that can leave the TPM.
func (f *TPM) ExportableDeviceKey(t testing.TB, qualifyingData []byte) tpmkey.Attestation {
	t.Helper()
	h, pub := f.ExportableKey(t)
	ak := f.LoadAK(t)
	ci, sig := f.Certify(t, h, ak, qualifyingData)
	akPub, err := f.AKPublic(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tpmkey.Attestation{AKPublic: akPub, KeyPublic: pub, CertifyInfo: ci, Signature: sig}
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
func (f *TPM) ForgeCertification(t testing.TB, signer tpmutil.Handle, keyPublic, qualifyingData []byte) (certifyInfo, signature []byte) {
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
	sig, err := legacy.Sign(f.RW(), signer, "", digest[:], nil, &certifyScheme)
	if err != nil {
		t.Fatalf("tpmtest: TPM2_Sign of the forged attestation: %v", err)
	}
	signature = tpm2.Marshal(tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgRSASSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{
			Hash: tpm2.TPMAlgSHA256,
			Sig:  tpm2.TPM2BPublicKeyRSA{Buffer: sig.RSA.Signature},
		}),
	})
	return certifyInfo, signature
}

// SignWithAK tries TPM2_Sign of a digest with the real AK. A
// restricted key refuses a digest without a ticket; the error is returned.
func (f *TPM) SignWithAK(t testing.TB, digest []byte) error {
	t.Helper()
	ak := f.LoadAK(t)
	_, err := legacy.Sign(f.RW(), ak, "", digest, nil, &certifyScheme)
	return err
}
