package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"math/big"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// QualifyingData is the qualifying data a TPM enrollment certifies the
// device key over: SHA-256(nonce ‖ WireGuard public key). The agent
// passes it to TPM2_Certify; the CA recomputes it from the nonce it issued
// and the WireGuard key in the request.
func QualifyingData(nonce, wgPublicKey []byte) []byte {
	h := sha256.New()
	h.Write(nonce)
	h.Write(wgPublicKey)
	return h.Sum(nil)
}

// VerifyKeyCertification checks a TPM2_Certify of the device key by the AK
// and returns the device public key (an *ecdsa.PublicKey on P-256).
//
//   - akPublic: the AK public area (TPMT_PUBLIC), the same bytes given to
//     [MakeCredential]; it must pass [ParseAKPublic].
//   - keyPublic: the device key's public area (TPMT_PUBLIC).
//   - certifyInfo: the TPMS_ATTEST the TPM produced.
//   - signature: the TPMT_SIGNATURE over certifyInfo by the AK.
//   - expectedQualifyingData: what the TPM must have put in extraData
//     ([QualifyingData] of this enrollment's nonce and WireGuard key).
//
// In order: the AK is a restricted TPM-bound signing key; the signature
// verifies with it; the attestation starts with TPM_GENERATED_VALUE and is
// of type TPM_ST_ATTEST_CERTIFY; extraData equals the expected qualifying
// data (constant time); the certified name equals the name of keyPublic;
// the key has fixedTPM, fixedParent and sensitiveDataOrigin, is not
// restricted, can sign, and is ECC P-256 with ECDSA (or no) scheme.
func VerifyKeyCertification(akPublic, keyPublic, certifyInfo, signature, expectedQualifyingData []byte) (crypto.PublicKey, error) {
	ak, err := ParseAKPublic(akPublic)
	if err != nil {
		return nil, err
	}
	if err := verifyTPMSignature(ak, certifyInfo, signature); err != nil {
		return nil, err
	}

	// Only now is certifyInfo known to come from the AK. A restricted key
	// signs data that starts with TPM_GENERATED_VALUE only if the TPM made
	// it, so the magic is what makes this a TPM statement.
	if len(certifyInfo) < 4 || binary.BigEndian.Uint32(certifyInfo[:4]) != uint32(tpm2.TPMGeneratedValue) {
		return nil, refuse(ReasonNotTPMGenerated, "certifyInfo does not start with TPM_GENERATED_VALUE (0x%08x)", uint32(tpm2.TPMGeneratedValue))
	}
	att, err := unmarshalCanonical[tpm2.TPMSAttest]("certifyInfo (TPMS_ATTEST)", certifyInfo)
	if err != nil {
		return nil, err
	}
	if att.Type != tpm2.TPMSTAttestCertify {
		return nil, refuse(ReasonAttestationType, "attestation type is 0x%04x, not TPM_ST_ATTEST_CERTIFY (0x%04x)", uint16(att.Type), uint16(tpm2.TPMSTAttestCertify))
	}
	if len(expectedQualifyingData) == 0 {
		return nil, refuse(ReasonQualifyingData, "no expected qualifying data was given to check against")
	}
	if subtle.ConstantTimeCompare(att.ExtraData.Buffer, expectedQualifyingData) != 1 {
		return nil, refuse(ReasonQualifyingData, "the certification was made over other qualifying data than SHA-256(nonce ‖ WireGuard key) of this enrollment: a replayed or foreign attestation")
	}
	info, err := att.Attested.Certify()
	if err != nil {
		return nil, refuseErr(ReasonMalformed, err, "certifyInfo has no certify information")
	}

	key, err := unmarshalCanonical[tpm2.TPMTPublic]("device key public area (TPMT_PUBLIC)", keyPublic)
	if err != nil {
		return nil, err
	}
	name, err := objectName(key)
	if err != nil {
		return nil, refuseErr(ReasonKeyUnsupported, err, "cannot compute the device key's name (name algorithm 0x%04x)", uint16(key.NameAlg))
	}
	if subtle.ConstantTimeCompare(name, info.Name.Buffer) != 1 {
		return nil, refuse(ReasonNameMismatch, "the AK certified the object named %x, but the key presented is named %x", info.Name.Buffer, name)
	}

	a := key.ObjectAttributes
	if m := missingBinding(a); len(m) > 0 {
		return nil, refuse(ReasonKeyExportable, "the device key lacks %s (attributes %s): it can leave the TPM or was not generated in it", strings.Join(m, ", "), attrString(a))
	}
	if a.Restricted {
		return nil, refuse(ReasonKeyRestricted, "the device key is restricted (attributes %s) and cannot sign a CSR or a handshake", attrString(a))
	}
	if !a.SignEncrypt {
		return nil, refuse(ReasonKeyNotSigning, "the device key does not have the sign attribute (attributes %s)", attrString(a))
	}
	if _, err := hashOf(key.NameAlg); err != nil {
		return nil, refuseErr(ReasonKeyUnsupported, err, "device key name algorithm 0x%04x", uint16(key.NameAlg))
	}
	if key.Type != tpm2.TPMAlgECC {
		return nil, refuse(ReasonKeyUnsupported, "device key type 0x%04x; an ECC P-256 key is required", uint16(key.Type))
	}
	params, err := key.Parameters.ECCDetail()
	if err != nil {
		return nil, refuseErr(ReasonMalformed, err, "device key ECC parameters")
	}
	if params.CurveID != tpm2.TPMECCNistP256 {
		return nil, refuse(ReasonKeyUnsupported, "device key curve 0x%04x; NIST P-256 is required", uint16(params.CurveID))
	}
	if s := params.Scheme.Scheme; s != tpm2.TPMAlgECDSA && s != tpm2.TPMAlgNull {
		return nil, refuse(ReasonKeyUnsupported, "device key signing scheme 0x%04x; ECDSA is required", uint16(s))
	}
	pub, err := tpm2.Pub(*key)
	if err != nil {
		return nil, refuseErr(ReasonKeyUnsupported, err, "device public key")
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, refuse(ReasonKeyUnsupported, "device public key of type %T", pub)
	}
	if _, err := ec.ECDH(); err != nil {
		return nil, refuseErr(ReasonKeyUnsupported, err, "device public key is not a valid P-256 point")
	}
	return ec, nil
}

// verifyTPMSignature checks a TPMT_SIGNATURE over data with the AK.
func verifyTPMSignature(ak *AKInfo, data, signature []byte) error {
	sig, err := unmarshalCanonical[tpm2.TPMTSignature]("signature (TPMT_SIGNATURE)", signature)
	if err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return refuse(ReasonBadSignature, format, args...)
	}
	switch k := ak.Public.(type) {
	case *rsa.PublicKey:
		var (
			s   *tpm2.TPMSSignatureRSA
			pss bool
		)
		switch sig.SigAlg {
		case tpm2.TPMAlgRSASSA:
			s, err = sig.Signature.RSASSA()
		case tpm2.TPMAlgRSAPSS:
			s, err = sig.Signature.RSAPSS()
			pss = true
		default:
			return bad("signature algorithm 0x%04x cannot be made by the RSA AK", uint16(sig.SigAlg))
		}
		if err != nil {
			return refuseErr(ReasonMalformed, err, "RSA signature")
		}
		h, digest, err := signedDigest(s.Hash, data)
		if err != nil {
			return err
		}
		if pss {
			err = rsa.VerifyPSS(k, h, digest, s.Sig.Buffer, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		} else {
			err = rsa.VerifyPKCS1v15(k, h, digest, s.Sig.Buffer)
		}
		if err != nil {
			return bad("the signature over certifyInfo does not verify with the AK (%v): another key signed it, or certifyInfo was altered", err)
		}
	case *ecdsa.PublicKey:
		if sig.SigAlg != tpm2.TPMAlgECDSA {
			return bad("signature algorithm 0x%04x cannot be made by the ECC AK", uint16(sig.SigAlg))
		}
		s, err := sig.Signature.ECDSA()
		if err != nil {
			return refuseErr(ReasonMalformed, err, "ECDSA signature")
		}
		_, digest, err := signedDigest(s.Hash, data)
		if err != nil {
			return err
		}
		r := new(big.Int).SetBytes(s.SignatureR.Buffer)
		ss := new(big.Int).SetBytes(s.SignatureS.Buffer)
		if !ecdsa.Verify(k, digest, r, ss) {
			return bad("the signature over certifyInfo does not verify with the AK: another key signed it, or certifyInfo was altered")
		}
	default:
		return fmt.Errorf("AK key type %T", ak.Public)
	}
	return nil
}

// signedDigest hashes data with the signature's hash algorithm alg.
func signedDigest(alg tpm2.TPMIAlgHash, data []byte) (crypto.Hash, []byte, error) {
	h, err := hashOf(alg)
	if err != nil {
		return 0, nil, refuseErr(ReasonBadSignature, err, "signature hash 0x%04x", uint16(alg))
	}
	d := h.New()
	d.Write(data)
	return h, d.Sum(nil), nil
}
