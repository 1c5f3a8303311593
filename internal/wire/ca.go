// Package wire holds the messages exchanged between agents, the CA and the
// coordinator. It only describes shapes and bounds; every trust decision is
// made by certs.Verify on the receiving side.
package wire

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/translog"
)

// HTTP paths of the CA.
const (
	PathRoots  = "/v1/ca/roots"
	PathNonce  = "/v1/ca/nonce"
	PathEnroll = "/v1/ca/enroll"
	PathRenew  = "/v1/ca/renew"
	// PathEnrollPoll is where an agent whose enrollment waits for an
	// admin's approval asks how it stands.
	PathEnrollPoll = "/v1/ca/enroll/poll"
	// PathPolicy serves the current signed policy document. Like PathCRL
	// it answers a GET with If-None-Match: ETag(document held) with 304 Not
	// Modified and no body when the document is unchanged.
	PathPolicy = "/v1/ca/policy"
	// PathCRL serves the current CRL (DER, application/pkix-crl).
	PathCRL = "/v1/ca/crl"
)

// ETag is the entity tag under which the CA serves a document (a CRL's
// DER, a signed policy's JSON): a strong tag over its SHA-256, so that an
// agent computes it for the document it holds, from whichever path it came,
// and asks for the CA's only if it differs.
func ETag(doc []byte) string {
	sum := sha256.Sum256(doc)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}

// MaxRequestSize bounds every request body the servers read.
const MaxRequestSize = 64 << 10

// NonceResponse carries a fresh single-use server nonce.
type NonceResponse struct {
	Nonce   string    `json:"nonce"`
	Expires time.Time `json:"expires"`
}

// EnrollRequest asks the CA for a first machine certificate.
type EnrollRequest struct {
	Token        string             `json:"token"`
	Hostname     string             `json:"hostname"`
	CSR          []byte             `json:"csr"` // DER, signed by the device key
	WireGuardKey certs.WireGuardKey `json:"wireguard_key"`
	Nonce        string             `json:"nonce"`
	Proof        []byte             `json:"proof"` // XEdDSA signature, see ProofMessage
	// TPM, when set, makes this a TPM enrollment (attestation level tpm):
	// the CSR's key must be the TPM-certified device key.
	TPM *TPMEvidence `json:"tpm,omitempty"`
	Asks
}

// Asks are the routes and services a device asks to be certified for, in
// every enrollment and renewal request (what `certmesh agent
// --advertise-routes` and `--advertise-services` say). Each request
// replaces what the device asked before: an empty one withdraws them. The
// CA certifies only those an admin approved (or a tag pre-approved), and
// refuses a request with a malformed entry or a route overlapping the
// overlay.
type Asks struct {
	Routes   []string `json:"routes,omitempty"`   // canonical CIDR prefixes, "10.0.0.0/24", "0.0.0.0/0"
	Services []string `json:"services,omitempty"` // "ssh:22", "dns:53/udp"
}

// RenewRequest asks for a new machine certificate over mTLS with the current
// one. The WireGuard key may change (rotation); the device key may not.
type RenewRequest struct {
	CSR          []byte             `json:"csr"`
	WireGuardKey certs.WireGuardKey `json:"wireguard_key"`
	Nonce        string             `json:"nonce"`
	Proof        []byte             `json:"proof"`
	Asks
}

// CertificateResponse is the CA's answer to enrollment and renewal.
type CertificateResponse struct {
	DeviceID       certs.DeviceID   `json:"device_id"`
	Bundle         certs.WireBundle `json:"bundle"`
	CoordinatorURL string           `json:"coordinator_url,omitempty"`
	OverlayRoutes  []netip.Prefix   `json:"overlay_routes"`
	NotAfter       time.Time        `json:"not_after"`
	// Inclusion proves the machine certificate is in the CA's
	// transparency log; LogKey is the log's verifier key (C2SP note).
	Inclusion *translog.InclusionBundle `json:"inclusion,omitempty"`
	LogKey    string                    `json:"log_key,omitempty"`
	// Pending is set instead of a certificate when the enrollment waits
	// for an admin's approval (HTTP 202): poll PathEnrollPoll with it.
	Pending *Pending `json:"pending,omitempty"`
	// Policy is the CA's current signed policy document (policy.
	// SignedPolicy's wire form), so that an agent holds the current policy
	// from the CA itself before any coordinator relays an older one.
	Policy json.RawMessage `json:"policy,omitempty"`
}

// Pending identifies an enrollment waiting for approval.
type Pending struct {
	ID      string `json:"id"`
	Secret  string `json:"secret"`
	Message string `json:"message"`
}

// EnrollPollRequest asks how a pending enrollment stands.
type EnrollPollRequest struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// RootsResponse lists the trust anchors (PEM) and the trust domain.
type RootsResponse struct {
	TrustDomain certs.TrustDomain `json:"trust_domain"`
	RootsPEM    string            `json:"roots_pem"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// ProofMessage is what the WireGuard private key signs (XEdDSA) to prove
// possession: a domain separator, the server nonce, and the SHA-256 of the
// device key's SubjectPublicKeyInfo, so the proof cannot be moved to
// another request or another device key.
func ProofMessage(nonce string, deviceSPKI []byte) []byte {
	h := sha256.Sum256(deviceSPKI)
	msg := []byte("certmesh wireguard proof-of-possession v1\x00")
	msg = append(msg, nonce...)
	msg = append(msg, 0)
	return append(msg, h[:]...)
}
