package attest_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// softTPM builds, in software, the structures a TPM would produce, so the
// CA-side checks can be tested on any machine (no cgo, no simulator). The
// simulator tests (build tag tpmsimulator) do the same with a real TPM.

var akAttrs = tpm2.TPMAObject{
	FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
	NoDA: true, Restricted: true, SignEncrypt: true,
}

var deviceAttrs = tpm2.TPMAObject{
	FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, SignEncrypt: true,
}

func rsaPublic(attrs tpm2.TPMAObject, nameAlg tpm2.TPMAlgID, k *rsa.PublicKey) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          nameAlg,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme: tpm2.TPMTRSAScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KeyBits: tpm2.TPMKeyBits(k.N.BitLen()),
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()}),
	}
}

func eccPublic(attrs tpm2.TPMAObject, curve tpm2.TPMECCCurve, k *ecdsa.PublicKey) tpm2.TPMTPublic {
	size := (k.Curve.Params().BitSize + 7) / 8
	raw := make([]byte, 2*size)
	k.X.FillBytes(raw[:size])
	k.Y.FillBytes(raw[size:])
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: curve,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: raw[:size]},
			Y: tpm2.TPM2BECCParameter{Buffer: raw[size:]},
		}),
	}
}

type softTPM struct {
	akKey    crypto.Signer
	akPublic []byte
}

func newSoftTPM(t testing.TB) *softTPM {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &softTPM{akKey: k, akPublic: tpm2.Marshal(rsaPublic(akAttrs, tpm2.TPMAlgSHA256, &k.PublicKey))}
}

func newSoftECCTPM(t testing.TB) *softTPM {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &softTPM{akKey: k, akPublic: tpm2.Marshal(eccPublic(akAttrs, tpm2.TPMECCNistP256, &k.PublicKey))}
}

type certification struct {
	akPublic, keyPublic, certifyInfo, signature []byte
	key                                         *ecdsa.PrivateKey
}

// certifyOpts changes what the soft TPM certifies.
type certifyOpts struct {
	attrs     *tpm2.TPMAObject
	magic     tpm2.TPMGenerated
	typ       tpm2.TPMST
	curve     elliptic.Curve
	nameOf    []byte // certify this public area's name instead
	signer    crypto.Signer
	keyPublic []byte // present this instead
}

func (s *softTPM) certify(t testing.TB, qd []byte, o certifyOpts) certification {
	t.Helper()
	curve := elliptic.P256()
	tcurve := tpm2.TPMECCNistP256
	if o.curve == elliptic.P384() {
		curve, tcurve = o.curve, tpm2.TPMECCNistP384
	}
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	attrs := deviceAttrs
	if o.attrs != nil {
		attrs = *o.attrs
	}
	pub := eccPublic(attrs, tcurve, &key.PublicKey)
	keyPublic := tpm2.Marshal(pub)
	named := &pub
	if o.nameOf != nil {
		named, err = tpm2.Unmarshal[tpm2.TPMTPublic](o.nameOf)
		if err != nil {
			t.Fatal(err)
		}
	}
	name, err := tpm2.ObjectName(named)
	if err != nil {
		t.Fatal(err)
	}
	magic := tpm2.TPMGeneratedValue
	if o.magic != 0 {
		magic = o.magic
	}
	typ := tpm2.TPMSTAttestCertify
	if o.typ != 0 {
		typ = o.typ
	}
	var attested tpm2.TPMUAttest
	if typ == tpm2.TPMSTAttestCertify {
		attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{Name: *name, QualifiedName: *name})
	} else {
		attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestCreation, &tpm2.TPMSCreationInfo{ObjectName: *name, CreationHash: tpm2.TPM2BDigest{Buffer: make([]byte, 32)}})
	}
	att := tpm2.TPMSAttest{
		Magic:           magic,
		Type:            typ,
		QualifiedSigner: tpm2.TPM2BName{Buffer: []byte{0, 0x0b}},
		ExtraData:       tpm2.TPM2BData{Buffer: qd},
		FirmwareVersion: 0x2000_0001,
		Attested:        attested,
	}
	info := tpm2.Marshal(att)
	signer := s.akKey
	if o.signer != nil {
		signer = o.signer
	}
	sig := tpmSign(t, signer, info)
	if o.keyPublic != nil {
		keyPublic = o.keyPublic
	}
	return certification{akPublic: s.akPublic, keyPublic: keyPublic, certifyInfo: info, signature: sig, key: key}
}

func tpmSign(t testing.TB, signer crypto.Signer, data []byte) []byte {
	t.Helper()
	d := sha256.Sum256(data)
	switch k := signer.(type) {
	case *rsa.PrivateKey:
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return tpm2.Marshal(tpm2.TPMTSignature{
			SigAlg: tpm2.TPMAlgRSASSA,
			Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{
				Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: sig},
			}),
		})
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return tpm2.Marshal(tpm2.TPMTSignature{
			SigAlg: tpm2.TPMAlgECDSA,
			Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
				Hash:       tpm2.TPMAlgSHA256,
				SignatureR: tpm2.TPM2BECCParameter{Buffer: padded(r, 32)},
				SignatureS: tpm2.TPM2BECCParameter{Buffer: padded(s, 32)},
			}),
		})
	}
	t.Fatalf("signer %T", signer)
	return nil
}

func padded(n *big.Int, size int) []byte {
	b := make([]byte, size)
	return n.FillBytes(b)
}
