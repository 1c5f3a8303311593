package certs

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// Fingerprint is the SHA-256 of a certificate's DER, in lower-case hex: the
// value agents pin for the root.
type Fingerprint string

// FingerprintOf computes a certificate's fingerprint.
func FingerprintOf(c *x509.Certificate) Fingerprint {
	sum := sha256.Sum256(c.Raw)
	return Fingerprint(hex.EncodeToString(sum[:]))
}

// ParseFingerprint accepts hex with or without colons, any case, optionally
// prefixed with "sha256:" or "SHA256:".
func ParseFingerprint(s string) (Fingerprint, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "sha256:")
	s = strings.ReplaceAll(s, ":", "")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("invalid root fingerprint %q: want the 64 hex digits of a SHA-256", s)
	}
	return Fingerprint(s), nil
}

// Matches reports, in constant time, whether c has this fingerprint.
func (f Fingerprint) Matches(c *x509.Certificate) bool {
	got := FingerprintOf(c)
	return subtle.ConstantTimeCompare([]byte(got), []byte(f)) == 1
}

// Roots is what an agent trusts: the pinned root certificate(s) of one trust
// domain.
type Roots struct {
	TrustDomain TrustDomain
	certs       []*x509.Certificate
	pool        *x509.CertPool
}

// NewRoots builds the trust anchors of a trust domain.
func NewRoots(td TrustDomain, roots ...*x509.Certificate) (*Roots, error) {
	if _, err := ParseTrustDomain(string(td)); err != nil {
		return nil, err
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("no root certificate for trust domain %q", td)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		if !r.IsCA {
			return nil, fmt.Errorf("root %q is not a CA certificate", r.Subject)
		}
		pool.AddCert(r)
	}
	return &Roots{TrustDomain: td, certs: roots, pool: pool}, nil
}

// Pool returns the roots as a certificate pool (for TLS configuration).
func (r *Roots) Pool() *x509.CertPool { return r.pool }

// Certificates returns the root certificates.
func (r *Roots) Certificates() []*x509.Certificate { return r.certs }
