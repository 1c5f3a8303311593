// Package attest verifies TPM 2.0 attestation for device enrollment, on the
// CA side. It is pure verification: it never talks to a TPM and imports no
// agent package.
//
// The chain it checks, in the order enrollment uses it:
//
//  1. [Policy.VerifyEK]: the endorsement key (EK) is genuine — its
//     certificate chains to a configured manufacturer root, or the SHA-256
//     fingerprint of its public key is on the allow-list (an MDM export).
//  2. [MakeCredential] / [CheckActivation]: the attestation key (AK) lives
//     in the same TPM as that EK. The CA encrypts a random secret to the EK,
//     bound to the AK's name; only that TPM, holding that AK, can recover it
//     with TPM2_ActivateCredential. [MakeCredential] refuses an AK that is
//     not a restricted, TPM-resident signing key, because only such a key
//     cannot be made to sign forged attestation data.
//  3. [VerifyKeyCertification]: the device key was certified by that AK
//     (TPM2_Certify) over the expected qualifying data
//     ([QualifyingData] = SHA-256(nonce ‖ WireGuard public key)), it is a
//     non-exportable (fixedTPM, fixedParent, sensitiveDataOrigin),
//     unrestricted ECC P-256 signing key, and its public area is the one
//     that was certified. It returns the device public key that the machine
//     certificate will carry.
//
// Every refusal is an [*Error] carrying a [Reason]; errors.Is(err, Reason)
// works, and the message says what was wrong.
//
// The AK public area given to [MakeCredential] must be the same bytes later
// given to [VerifyKeyCertification]: the credential activation proves the
// AK with exactly that name is in the TPM.
//
// TPM structures (TPMT_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE) are parsed with
// github.com/google/go-tpm/tpm2; the credential blob is made with
// github.com/google/go-tpm/legacy/tpm2/credactivation (the same code
// go-attestation and step-ca use), which assumes an EK made from the TCG
// default template (RSA 2048 or ECC P-256 with AES-128 CFB), the low-range
// EK that every TPM ships.
package attest
