package attest

import (
	"bufio"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"

	"fmt"
	"io"
	"sort"
	"strings"
)

// EKFingerprint identifies an endorsement key: the SHA-256 of its public
// key in PKIX (SubjectPublicKeyInfo) DER form. It is what an MDM inventory
// or `openssl x509 -in ek.crt -noout -pubkey | openssl pkey -pubin
// -outform DER | sha256sum` gives, and what agent/tpmkey computes on the
// device.
//
// Its text form is 64 lowercase hex digits.
type EKFingerprint [sha256.Size]byte

// FingerprintEK computes the fingerprint of an EK public key.
func FingerprintEK(pub crypto.PublicKey) (EKFingerprint, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return EKFingerprint{}, fmt.Errorf("EK fingerprint: %w", err)
	}
	return sha256.Sum256(der), nil
}

// String returns the 64 lowercase hex digits.
func (f EKFingerprint) String() string { return hex.EncodeToString(f[:]) }

// IsZero reports whether f is the zero value.
func (f EKFingerprint) IsZero() bool { return f == EKFingerprint{} }

// MarshalText implements encoding.TextMarshaler (hex).
func (f EKFingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; it accepts what
// [ParseEKFingerprint] accepts.
func (f *EKFingerprint) UnmarshalText(b []byte) error {
	p, err := ParseEKFingerprint(string(b))
	if err != nil {
		return err
	}
	*f = p
	return nil
}

// ParseEKFingerprint parses an EK fingerprint. It accepts 64 hex digits in
// either case, optionally separated by colons (as openssl prints them), and
// optionally prefixed with "sha256:"; after that prefix it also accepts the
// standard base64 form that go.step.sm/crypto's EK.Fingerprint prints.
func ParseEKFingerprint(s string) (EKFingerprint, error) {
	var f EKFingerprint
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

// ParseAllowList reads an EK allow-list: one fingerprint per line (see
// [ParseEKFingerprint]), blank lines ignored, '#' starts a comment that
// runs to the end of the line (so "<hex>  # laptop-42" is fine). A
// fingerprint listed twice is kept once. An error names the line.
func ParseAllowList(r io.Reader) (map[EKFingerprint]bool, error) {
	out := make(map[EKFingerprint]bool)
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		f, err := ParseEKFingerprint(text)
		if err != nil {
			return nil, fmt.Errorf("allow-list line %d: %w", line, err)
		}
		out[f] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("allow-list: %w", err)
	}
	return out, nil
}

// WriteAllowList writes the fingerprints set to true in set, one per line,
// sorted, in the form [ParseAllowList] reads.
func WriteAllowList(w io.Writer, set map[EKFingerprint]bool) error {
	lines := make([]string, 0, len(set))
	for f, ok := range set {
		if ok {
			lines = append(lines, f.String())
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		if _, err := io.WriteString(w, l+"\n"); err != nil {
			return err
		}
	}
	return nil
}
