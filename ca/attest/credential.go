package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"fmt"

	legacy "github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/legacy/tpm2/credactivation"
)

// Challenge is a credential-activation challenge for the agent's TPM: the
// inputs of TPM2_ActivateCredential (TPM2B_ID_OBJECT and
// TPM2B_ENCRYPTED_SECRET, each with its 2-byte size prefix, as
// go-attestation's ActivateCredential takes them).
type Challenge struct {
	Credential []byte `json:"credential"`
	Secret     []byte `json:"secret"`
}

// secretSize is the size of the activation secret (the largest digest
// every TPM supports).
const secretSize = 32

// symBlockSize is the EK's symmetric key size in bytes: AES-128 in the TCG
// default EK templates (RSA 2048 and ECC P-256).
const symBlockSize = 16

// MakeCredential makes a credential-activation challenge: a fresh random
// secret encrypted to the EK and bound to the AK's name. Only the TPM that
// holds the EK, with that AK loaded, recovers the secret. It returns the
// challenge for the agent and the secret to keep for [CheckActivation].
//
// ekPub must be the EK public key that [Policy.VerifyEK] accepted (take it
// from the EK certificate). The AK must pass [ParseAKPublic]: MakeCredential
// refuses to bind a key that is not a restricted, TPM-bound signing key.
func MakeCredential(ekPub crypto.PublicKey, akPublic []byte) (Challenge, []byte, error) {
	if ekPub == nil {
		return Challenge{}, nil, refuse(ReasonMalformed, "no EK public key")
	}
	if err := checkEKKey(ekPub); err != nil {
		return Challenge{}, nil, err
	}
	if err := checkCredentialEK(ekPub); err != nil {
		return Challenge{}, nil, err
	}
	ak, err := ParseAKPublic(akPublic)
	if err != nil {
		return Challenge{}, nil, err
	}
	secret := make([]byte, secretSize)
	if _, err := rand.Read(secret); err != nil {
		return Challenge{}, nil, fmt.Errorf("activation secret: %w", err)
	}
	// ak.Name is nameAlg (SHA-256, checked) ‖ digest.
	name := &legacy.HashValue{Alg: legacy.AlgSHA256, Value: ak.Name[2:]}
	cred, encSecret, err := credactivation.Generate(name, ekPub, symBlockSize, secret)
	if err != nil {
		return Challenge{}, nil, fmt.Errorf("make credential: %w", err)
	}
	return Challenge{Credential: cred, Secret: encSecret}, secret, nil
}

// CheckActivation compares, in constant time, the secret the agent's TPM
// recovered with the one [MakeCredential] returned.
func CheckActivation(expected, got []byte) error {
	if len(expected) == 0 {
		return refuse(ReasonActivation, "no activation secret was issued for this enrollment")
	}
	if subtle.ConstantTimeCompare(expected, got) != 1 {
		return refuse(ReasonActivation, "the secret returned is not the one encrypted to the EK: the AK is not in the TPM that holds this EK")
	}
	return nil
}

// checkCredentialEK accepts the EKs whose TCG default template this
// package makes credentials for: RSA 2048 and ECC P-256, both with
// AES-128 and SHA-256 (the "low range" EK every TPM has). The high-range
// templates (RSA 3072, ECC P-384, AES-256, SHA-384) are not supported.
func checkCredentialEK(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() != 2048 {
			return refuse(ReasonEKUnsupported, "RSA EK of %d bits: credential activation supports the RSA 2048 EK template", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return refuse(ReasonEKUnsupported, "ECC EK on %s: credential activation supports the ECC P-256 EK template", curveName(k))
		}
	}
	return nil
}
