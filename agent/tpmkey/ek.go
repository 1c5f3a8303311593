package tpmkey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"

	steptpm "go.step.sm/crypto/tpm"

	"github.com/certmesh/certmesh/internal/ekfp"
)

// EKFingerprint is the SHA-256 of an EK public key in PKIX DER form, the
// same value (and type, internal/ekfp) ca/attest computes and the
// allow-list holds. Text form: 64 lowercase hex digits.
type EKFingerprint = ekfp.Fingerprint

// FingerprintEK computes the fingerprint of an EK public key.
func FingerprintEK(pub crypto.PublicKey) (EKFingerprint, error) {
	f, err := ekfp.Of(pub)
	if err != nil {
		return f, fmt.Errorf("tpmkey: %w", err)
	}
	return f, nil
}

// EK is the TPM's endorsement key.
type EK struct {
	// Public is the EK public key (RSA 2048 on every TPM go-attestation
	// handles: it reads the RSA EK only).
	Public crypto.PublicKey
	// Certificate is the manufacturer's EK certificate from the TPM's NV
	// (or downloaded, when allowed); nil when there is none, as on the
	// simulator and many firmware TPMs.
	Certificate *x509.Certificate
	// CertificateURL is where the manufacturer publishes the certificate,
	// when the TPM says so.
	CertificateURL string
	// Fingerprint is the SHA-256 of Public in PKIX DER form.
	Fingerprint EKFingerprint
}

// Type describes the key, e.g. "RSA 2048" or "ECDSA P-256".
func (ek *EK) Type() string {
	switch k := ek.Public.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	default:
		return fmt.Sprintf("%T", k)
	}
}

// EK reads the endorsement key and its certificate. The EK used for
// credential activation is go-attestation's: the RSA EK of the TCG default
// template (persistent handle 0x81010001).
func (t *TPM) EK(ctx context.Context) (*EK, error) {
	eks, err := t.tpm.GetEKs(ctx)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: reading EK: %w", err)
	}
	var pick *steptpm.EK
	for _, e := range eks {
		if _, ok := e.Public().(*rsa.PublicKey); !ok {
			continue
		}
		if pick == nil || (pick.Certificate() == nil && e.Certificate() != nil) {
			pick = e
		}
	}
	if pick == nil {
		return nil, errors.New("tpmkey: the TPM has no RSA endorsement key")
	}
	fp, err := FingerprintEK(pick.Public())
	if err != nil {
		return nil, err
	}
	return &EK{
		Public:         pick.Public(),
		Certificate:    pick.Certificate(),
		CertificateURL: pick.CertificateURL(),
		Fingerprint:    fp,
	}, nil
}
