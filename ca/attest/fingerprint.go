package attest

import (
	"bufio"
	"crypto"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/certmesh/certmesh/internal/ekfp"
)

// EKFingerprint identifies an endorsement key: the SHA-256 of its public
// key in PKIX (SubjectPublicKeyInfo) DER form, the one type agent/tpmkey
// computes on the device (internal/ekfp). Its text form is 64 lowercase
// hex digits.
type EKFingerprint = ekfp.Fingerprint

// FingerprintEK computes the fingerprint of an EK public key.
func FingerprintEK(pub crypto.PublicKey) (EKFingerprint, error) { return ekfp.Of(pub) }

// ParseEKFingerprint parses an EK fingerprint ([ekfp.Parse]: 64 hex
// digits, colons allowed, or "sha256:" and the base64 form).
func ParseEKFingerprint(s string) (EKFingerprint, error) { return ekfp.Parse(s) }

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
