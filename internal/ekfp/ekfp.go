// Package ekfp is the fingerprint of a TPM's endorsement key, the one
// value the CA's allow-list (ca/attest) and the device (agent/tpmkey)
// compute and compare.
package ekfp

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Fingerprint identifies an endorsement key: the SHA-256 of its public
// key in PKIX (SubjectPublicKeyInfo) DER form. It is what an MDM inventory
// or `openssl x509 -in ek.crt -noout -pubkey | openssl pkey -pubin
// -outform DER | sha256sum` gives, and what agent/tpmkey computes on the
// device: ca/attest and agent/tpmkey name this type.
//
// Its text form is 64 lowercase hex digits.
type Fingerprint [sha256.Size]byte

// Of computes the fingerprint of an EK public key.
func Of(pub crypto.PublicKey) (Fingerprint, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Fingerprint{}, fmt.Errorf("EK fingerprint: %w", err)
	}
	return sha256.Sum256(der), nil
}

// String returns the 64 lowercase hex digits.
func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

// IsZero reports whether f is the zero value.
func (f Fingerprint) IsZero() bool { return f == Fingerprint{} }

// MarshalText implements encoding.TextMarshaler (hex).
func (f Fingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; it accepts what
// [Parse] accepts.
func (f *Fingerprint) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*f = p
	return nil
}

// Parse parses an EK fingerprint. It accepts 64 hex digits in
// either case, optionally separated by colons (as openssl prints them), and
// optionally prefixed with "sha256:"; after that prefix it also accepts the
// standard base64 form that go.step.sm/crypto's EK.Fingerprint prints.
func Parse(s string) (Fingerprint, error) {
	var f Fingerprint
	in := strings.TrimSpace(s)
	body := in
	if len(body) >= 7 && strings.EqualFold(body[:7], "sha256:") {
		body = body[7:]
		if b, err := base64.StdEncoding.DecodeString(body); err == nil && len(b) == len(f) {
			copy(f[:], b)
			return f, nil
		}
	}
	body = strings.ReplaceAll(body, ":", "")
	if len(body) != 2*len(f) {
		return f, fmt.Errorf("EK fingerprint %q: want 64 hex digits (SHA-256), got %d characters", s, len(body))
	}
	b, err := hex.DecodeString(body)
	if err != nil {
		return f, fmt.Errorf("EK fingerprint %q: not hex: %w", s, err)
	}
	copy(f[:], b)
	return f, nil
}
