package wire

import (
	"crypto/sha256"

	"github.com/certmesh/certmesh/certs"
)

// PathRenewExpired is where a device whose machine certificate expired
// (within the CA's renew_after_expiry window) renews without mTLS: the TLS
// handshake refuses an expired certificate, so the request carries it and
// proves possession of its keys over a fresh nonce instead.
const PathRenewExpired = "/v1/ca/renew/expired"

// RenewExpiredRequest renews an expired machine certificate. CSR, Nonce and
// Proof are as in RenewRequest; DeviceProof is the device key's signature
// (ECDSA, ASN.1, over the SHA-256 of DeviceProofMessage; a TPM device's key
// signs inside the TPM).
type RenewExpiredRequest struct {
	Certificate  []byte             `json:"certificate"` // DER, the expired machine certificate
	CSR          []byte             `json:"csr"`
	WireGuardKey certs.WireGuardKey `json:"wireguard_key"`
	Nonce        string             `json:"nonce"`
	Proof        []byte             `json:"proof"`
	DeviceProof  []byte             `json:"device_proof"`
	Asks
}

// DeviceProofMessage is what the device key signs to renew an expired
// certificate: a domain separator, the server nonce, the SHA-256 of the
// certificate renewed and the WireGuard key asked for, so the signature
// cannot be moved to another request, certificate or key.
func DeviceProofMessage(nonce string, certDER []byte, wg certs.WireGuardKey) []byte {
	h := sha256.Sum256(certDER)
	msg := []byte("certmesh device-key renewal after expiry v1\x00")
	msg = append(msg, nonce...)
	msg = append(msg, 0)
	msg = append(msg, h[:]...)
	return append(msg, wg[:]...)
}
