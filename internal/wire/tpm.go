package wire

import "time"

// PathTPMChallenge starts a TPM enrollment: the CA checks the endorsement
// key and answers with a credential-activation challenge bound to the AK.
const PathTPMChallenge = "/v1/ca/tpm/challenge"

// TPMChallengeRequest presents the TPM's endorsement key (its public key,
// PKIX DER, and its certificate when there is one) and attestation key
// (TPMT_PUBLIC).
type TPMChallengeRequest struct {
	EKPublic []byte `json:"ek_public"`
	EKCert   []byte `json:"ek_cert,omitempty"`
	AKPublic []byte `json:"ak_public"`
	// Manufacturer is what the TPM says it is (shown to admins; not trusted).
	Manufacturer string `json:"manufacturer,omitempty"`
}

// TPMChallengeResponse is the encrypted credential only that TPM, holding
// that AK, can activate.
type TPMChallengeResponse struct {
	Session    string    `json:"session"`
	Credential []byte    `json:"credential"`
	Secret     []byte    `json:"secret"`
	Expires    time.Time `json:"expires"`
}

// TPMEvidence completes a TPM enrollment (in EnrollRequest.TPM): the
// activated secret, and the AK's TPM2_Certify of the device key over
// SHA-256(nonce ‖ WireGuard public key).
type TPMEvidence struct {
	Session         string `json:"session"`
	ActivatedSecret []byte `json:"activated_secret"`
	KeyPublic       []byte `json:"key_public"`
	CertifyInfo     []byte `json:"certify_info"`
	Signature       []byte `json:"signature"`
}
