package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// unmarshalCanonical parses a TPM structure with go-tpm and insists that
// it re-encodes to exactly the bytes given: no trailing data, no
// alternative encodings. Names and signatures are computed over bytes,
// so what is checked must be what was parsed.
func unmarshalCanonical[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](what string, b []byte) (t *T, err error) {
	if len(b) == 0 {
		return nil, refuse(ReasonMalformed, "%s is empty", what)
	}
	t, err = tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, refuseErr(ReasonMalformed, err, "cannot parse %s", what)
	}
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, refuse(ReasonMalformed, "cannot re-encode %s: %v", what, r)
		}
	}()
	if !bytes.Equal(tpm2.Marshal(*t), b) {
		return nil, refuse(ReasonMalformed, "%s is not in canonical TPM encoding (%d bytes, trailing data or non-canonical fields)", what, len(b))
	}
	return t, nil
}

// attrString lists the object attributes that are set, for messages.
func attrString(a tpm2.TPMAObject) string {
	var s []string
	add := func(ok bool, name string) {
		if ok {
			s = append(s, name)
		}
	}
	add(a.FixedTPM, "fixedTPM")
	add(a.STClear, "stClear")
	add(a.FixedParent, "fixedParent")
	add(a.SensitiveDataOrigin, "sensitiveDataOrigin")
	add(a.UserWithAuth, "userWithAuth")
	add(a.AdminWithPolicy, "adminWithPolicy")
	add(a.NoDA, "noDA")
	add(a.EncryptedDuplication, "encryptedDuplication")
	add(a.Restricted, "restricted")
	add(a.Decrypt, "decrypt")
	add(a.SignEncrypt, "sign")
	add(a.X509Sign, "x509sign")
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "|")
}

// missingBinding names the attributes among fixedTPM, fixedParent and
// sensitiveDataOrigin that are clear.
func missingBinding(a tpm2.TPMAObject) []string {
	var m []string
	if !a.FixedTPM {
		m = append(m, "fixedTPM")
	}
	if !a.FixedParent {
		m = append(m, "fixedParent")
	}
	if !a.SensitiveDataOrigin {
		m = append(m, "sensitiveDataOrigin")
	}
	return m
}

// objectName computes the TPM Name of a public area (nameAlg ‖ H(TPMT_PUBLIC)).
func objectName(pub *tpm2.TPMTPublic) ([]byte, error) {
	n, err := tpm2.ObjectName(pub)
	if err != nil {
		return nil, err
	}
	return n.Buffer, nil
}

// AKInfo describes an attestation key accepted by [ParseAKPublic].
type AKInfo struct {
	// Public is the AK public key.
	Public crypto.PublicKey
	// Name is the AK's TPM Name (nameAlg ‖ digest of its public area): the
	// value credential activation binds to.
	Name   []byte
	public *tpm2.TPMTPublic
}

// ParseAKPublic parses an AK public area (TPMT_PUBLIC) and checks that it
// is fit to be an attestation key: a restricted signing key (restricted,
// sign, not decrypt), bound to the TPM (fixedTPM, fixedParent,
// sensitiveDataOrigin), SHA-256 name algorithm, RSA ≥ 2048 or ECC
// P-256/P-384. A key that is not restricted could sign arbitrary data made
// to look like a TPM attestation, so it is refused with
// [ReasonAKNotRestricted].
func ParseAKPublic(akPublic []byte) (*AKInfo, error) {
	pub, err := unmarshalCanonical[tpm2.TPMTPublic]("AK public area (TPMT_PUBLIC)", akPublic)
	if err != nil {
		return nil, err
	}
	a := pub.ObjectAttributes
	if !a.Restricted || !a.SignEncrypt || a.Decrypt {
		return nil, refuse(ReasonAKNotRestricted, "the AK must have restricted and sign set and decrypt clear; it has %s", attrString(a))
	}
	if m := missingBinding(a); len(m) > 0 {
		return nil, refuse(ReasonAKExportable, "the AK lacks %s (attributes %s): its private key may exist outside this TPM", strings.Join(m, ", "), attrString(a))
	}
	if pub.NameAlg != tpm2.TPMAlgSHA256 {
		return nil, refuse(ReasonAKUnsupported, "AK name algorithm 0x%04x; SHA-256 is required", uint16(pub.NameAlg))
	}
	key, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, refuseErr(ReasonAKUnsupported, err, "AK of type 0x%04x", uint16(pub.Type))
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, refuse(ReasonAKUnsupported, "RSA AK of %d bits; at least 2048 are required", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize < 256 {
			return nil, refuse(ReasonAKUnsupported, "ECC AK on %s; P-256 or P-384 is required", k.Curve.Params().Name)
		}
		if _, err := k.ECDH(); err != nil {
			return nil, refuseErr(ReasonAKUnsupported, err, "ECC AK is not a valid point")
		}
	default:
		return nil, refuse(ReasonAKUnsupported, "AK public key of type %T", key)
	}
	name, err := objectName(pub)
	if err != nil {
		return nil, refuseErr(ReasonAKUnsupported, err, "cannot compute the AK name")
	}
	return &AKInfo{Public: key, Name: name}, nil
}

func hashOf(alg tpm2.TPMIAlgHash) (crypto.Hash, error) {
	h, err := alg.Hash()
	if err != nil {
		return 0, err
	}
	if h == crypto.SHA1 {
		return 0, fmt.Errorf("SHA-1 is not accepted")
	}
	return h, nil
}
