package translog

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certmesh/certmesh/certs"
)

// Hash is a SHA-256 tree hash: a leaf hash, an interior node or a root.
// It prints and marshals to JSON as base64.
type Hash = tlog.Hash

// LeafVersion is the version of the leaf encoding this package writes and
// reads (see the package documentation).
const LeafVersion = 1

// Kind is the kind of a log entry.
type Kind uint8

// The kinds of entry.
const (
	KindCertificate Kind = 1 // a certificate the CA issued
	KindRevocation  Kind = 2 // a certificate the CA revoked
	KindPolicy      Kind = 3 // a policy version the CA published
)

func (k Kind) String() string {
	switch k {
	case KindCertificate:
		return "certificate"
	case KindRevocation:
		return "revocation"
	case KindPolicy:
		return "policy"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// RevocationReason is an RFC 5280 CRLReason code.
type RevocationReason uint8

// The RFC 5280 reason codes (7 is unused).
const (
	ReasonUnspecified          RevocationReason = 0
	ReasonKeyCompromise        RevocationReason = 1
	ReasonCACompromise         RevocationReason = 2
	ReasonAffiliationChanged   RevocationReason = 3
	ReasonSuperseded           RevocationReason = 4
	ReasonCessationOfOperation RevocationReason = 5
	ReasonCertificateHold      RevocationReason = 6
	ReasonRemoveFromCRL        RevocationReason = 8
	ReasonPrivilegeWithdrawn   RevocationReason = 9
	ReasonAACompromise         RevocationReason = 10
)

var revocationReasonNames = map[RevocationReason]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "keyCompromise",
	ReasonCACompromise:         "cACompromise",
	ReasonAffiliationChanged:   "affiliationChanged",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessationOfOperation",
	ReasonCertificateHold:      "certificateHold",
	ReasonRemoveFromCRL:        "removeFromCRL",
	ReasonPrivilegeWithdrawn:   "privilegeWithdrawn",
	ReasonAACompromise:         "aACompromise",
}

// Valid reports whether r is an RFC 5280 reason code.
func (r RevocationReason) Valid() bool { _, ok := revocationReasonNames[r]; return ok }

// String is the RFC 5280 name of the reason.
func (r RevocationReason) String() string {
	if n, ok := revocationReasonNames[r]; ok {
		return n
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Revocation is a revocation entry: the CA revoked the certificate with
// this serial number, of this device (and, for a user certificate, of
// this user), at this time.
type Revocation struct {
	Serial *big.Int
	Time   time.Time // logged to the second
	Reason RevocationReason
	Device certs.DeviceID // the device of the certificate (a user certificate's bound device)
	Email  certs.Email    // a user certificate's user; empty for a machine certificate
}

// PolicyVersion is a policy entry: the CA published this version of the
// access policy, whose signed document has this SHA-256.
type PolicyVersion struct {
	Version   uint64
	SHA256    [sha256.Size]byte
	Published time.Time // logged to the second
}

// Entry is one log entry. Kind says which of Certificate, Revocation and
// Policy is set.
type Entry struct {
	Kind Kind

	// Certificate is the DER of an issued certificate (KindCertificate).
	Certificate []byte
	// Chain holds the DER of the intermediates Certificate chains through
	// to the root. It is stored and served beside the leaf, not hashed
	// into it; it may be empty.
	Chain [][]byte

	Revocation *Revocation    // KindRevocation
	Policy     *PolicyVersion // KindPolicy
}

// CertificateEntry is the entry for an issued certificate and the
// intermediates it chains through.
func CertificateEntry(der []byte, chain ...[]byte) Entry {
	return Entry{Kind: KindCertificate, Certificate: der, Chain: chain}
}

// RevocationEntry is the entry for a revocation.
func RevocationEntry(r Revocation) Entry { return Entry{Kind: KindRevocation, Revocation: &r} }

// PolicyEntry is the entry for a published policy version: signedDoc is
// the signed policy document exactly as the CA distributes it.
func PolicyEntry(version uint64, signedDoc []byte, published time.Time) Entry {
	return Entry{Kind: KindPolicy, Policy: &PolicyVersion{Version: version, SHA256: sha256.Sum256(signedDoc), Published: published}}
}

// Limits of the encoding.
const (
	maxSerialLen = 20 // RFC 5280 4.1.2.2
	maxCertDER   = 1<<24 - 1
)

// MarshalLeaf returns the entry's leaf (see the package documentation).
// It fails, with ReasonMalformedEntry, for an entry the encoding cannot
// carry or that ParseLeaf would refuse. It does not check that a
// certificate parses (Log.Append does).
func (e Entry) MarshalLeaf() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint8(LeafVersion)
	b.AddUint8(uint8(e.Kind))
	switch e.Kind {
	case KindCertificate:
		if e.Revocation != nil || e.Policy != nil {
			return nil, fail(ReasonMalformedEntry, "certificate entry carries another kind's fields")
		}
		if len(e.Certificate) == 0 || len(e.Certificate) > maxCertDER {
			return nil, fail(ReasonMalformedEntry, "certificate is %d bytes, want 1 to %d", len(e.Certificate), maxCertDER)
		}
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Certificate) })
	case KindRevocation:
		r := e.Revocation
		if r == nil || e.Policy != nil || e.Certificate != nil || e.Chain != nil {
			return nil, fail(ReasonMalformedEntry, "revocation entry without its revocation, or with another kind's fields")
		}
		if err := r.check(); err != nil {
			return nil, err
		}
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(r.Serial.Bytes()) })
		b.AddUint64(uint64(r.Time.Unix()))
		b.AddUint8(uint8(r.Reason))
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(r.Device)) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(r.Email)) })
	case KindPolicy:
		p := e.Policy
		if p == nil || e.Revocation != nil || e.Certificate != nil || e.Chain != nil {
			return nil, fail(ReasonMalformedEntry, "policy entry without its policy, or with another kind's fields")
		}
		if p.Version == 0 {
			return nil, fail(ReasonMalformedEntry, "policy version 0")
		}
		if p.Published.Unix() <= 0 {
			return nil, fail(ReasonMalformedEntry, "policy publication time %s is not after 1970", p.Published.UTC().Format(time.RFC3339))
		}
		b.AddUint64(p.Version)
		b.AddBytes(p.SHA256[:])
		b.AddUint64(uint64(p.Published.Unix()))
	default:
		return nil, fail(ReasonMalformedEntry, "unknown entry kind %d", uint8(e.Kind))
	}
	leaf, err := b.Bytes()
	if err != nil {
		return nil, fail(ReasonMalformedEntry, "encoding leaf: %v", err)
	}
	return leaf, nil
}

func (r *Revocation) check() error {
	if r.Serial == nil || r.Serial.Sign() <= 0 {
		return fail(ReasonMalformedEntry, "revocation serial must be positive")
	}
	if n := len(r.Serial.Bytes()); n > maxSerialLen {
		return fail(ReasonMalformedEntry, "revocation serial is %d bytes, at most %d", n, maxSerialLen)
	}
	if r.Time.Unix() <= 0 {
		return fail(ReasonMalformedEntry, "revocation time %s is not after 1970", r.Time.UTC().Format(time.RFC3339))
	}
	if !r.Reason.Valid() {
		return fail(ReasonMalformedEntry, "unknown revocation reason %d", uint8(r.Reason))
	}
	if _, err := certs.ParseDeviceID(string(r.Device)); err != nil {
		return fail(ReasonMalformedEntry, "revocation device: %v", err)
	}
	if r.Email != "" {
		e, err := certs.ParseEmail(string(r.Email))
		if err != nil {
			return fail(ReasonMalformedEntry, "revocation email: %v", err)
		}
		if e != r.Email {
			return fail(ReasonMalformedEntry, "revocation email %q is not in canonical form %q", r.Email, e)
		}
	}
	return nil
}

// LeafHash is the entry's RFC 6962 leaf hash, SHA-256(0x00 || leaf).
func (e Entry) LeafHash() (Hash, error) {
	leaf, err := e.MarshalLeaf()
	if err != nil {
		return Hash{}, err
	}
	return LeafHash(leaf), nil
}

// LeafHash is the RFC 6962 hash of a leaf, SHA-256(0x00 || leaf).
func LeafHash(leaf []byte) Hash { return tlog.RecordHash(leaf) }

// CertificateLeafHash is the leaf hash of the certificate entry for der:
// what an agent computes from a peer's certificate to check its inclusion.
func CertificateLeafHash(der []byte) (Hash, error) { return CertificateEntry(der).LeafHash() }

// ParseLeaf decodes a leaf. It accepts only the one encoding MarshalLeaf
// writes for the entry (version 1, no trailing bytes, minimal serial,
// valid fields); anything else is ReasonMalformedEntry. It does not parse
// a certificate's DER. The returned entry's Chain is empty: the chain is
// not part of the leaf.
func ParseLeaf(leaf []byte) (Entry, error) {
	s := cryptobyte.String(leaf)
	var version, kind uint8
	if !s.ReadUint8(&version) || !s.ReadUint8(&kind) {
		return Entry{}, fail(ReasonMalformedEntry, "leaf of %d bytes is too short", len(leaf))
	}
	if version != LeafVersion {
		return Entry{}, fail(ReasonMalformedEntry, "leaf version %d, this reader knows %d", version, LeafVersion)
	}
	e := Entry{Kind: Kind(kind)}
	switch e.Kind {
	case KindCertificate:
		var der cryptobyte.String
		if !s.ReadUint24LengthPrefixed(&der) || len(der) == 0 {
			return Entry{}, fail(ReasonMalformedEntry, "certificate leaf: truncated or empty DER")
		}
		e.Certificate = bytes.Clone(der)
	case KindRevocation:
		var serial, dev, email cryptobyte.String
		var at uint64
		var reason uint8
		if !s.ReadUint8LengthPrefixed(&serial) || !s.ReadUint64(&at) || !s.ReadUint8(&reason) ||
			!s.ReadUint8LengthPrefixed(&dev) || !s.ReadUint8LengthPrefixed(&email) {
			return Entry{}, fail(ReasonMalformedEntry, "revocation leaf is truncated")
		}
		if len(serial) == 0 || serial[0] == 0 {
			return Entry{}, fail(ReasonMalformedEntry, "revocation serial is empty or not minimal")
		}
		if at == 0 || at > 1<<62 {
			return Entry{}, fail(ReasonMalformedEntry, "revocation time %d out of range", at)
		}
		e.Revocation = &Revocation{
			Serial: new(big.Int).SetBytes(serial),
			Time:   time.Unix(int64(at), 0).UTC(),
			Reason: RevocationReason(reason),
			Device: certs.DeviceID(dev),
			Email:  certs.Email(email),
		}
		if err := e.Revocation.check(); err != nil {
			return Entry{}, err
		}
	case KindPolicy:
		p := &PolicyVersion{}
		var sum []byte
		var at uint64
		if !s.ReadUint64(&p.Version) || !s.ReadBytes(&sum, sha256.Size) || !s.ReadUint64(&at) {
			return Entry{}, fail(ReasonMalformedEntry, "policy leaf is truncated")
		}
		if p.Version == 0 {
			return Entry{}, fail(ReasonMalformedEntry, "policy version 0")
		}
		if at == 0 || at > 1<<62 {
			return Entry{}, fail(ReasonMalformedEntry, "policy publication time %d out of range", at)
		}
		copy(p.SHA256[:], sum)
		p.Published = time.Unix(int64(at), 0).UTC()
		e.Policy = p
	default:
		return Entry{}, fail(ReasonMalformedEntry, "unknown entry kind %d", kind)
	}
	if !s.Empty() {
		return Entry{}, fail(ReasonMalformedEntry, "%d trailing bytes after the %s leaf", len(s), e.Kind)
	}
	return e, nil
}

// CertificateKind says what kind of certmesh certificate c is, from its
// extensions: "machine" (it carries a WireGuard key), "user" (it carries a
// device binding), or "" (neither, or both: not a certmesh leaf).
func CertificateKind(c *x509.Certificate) string {
	var wg, bound bool
	for _, e := range c.Extensions {
		switch {
		case e.Id.Equal(certs.OIDWireGuardKey):
			wg = true
		case e.Id.Equal(certs.OIDDeviceBinding):
			bound = true
		}
	}
	switch {
	case wg && !bound:
		return "machine"
	case bound && !wg:
		return "user"
	}
	return ""
}

// validate checks what Append needs beyond the leaf encoding: a
// certificate and its chain parse as X.509 within certs' size limits.
func (e Entry) validate() error {
	if e.Kind != KindCertificate {
		return nil
	}
	if len(e.Certificate) > certs.MaxCertSize {
		return fail(ReasonMalformedEntry, "certificate is %d bytes, at most %d", len(e.Certificate), certs.MaxCertSize)
	}
	if _, err := x509.ParseCertificate(e.Certificate); err != nil {
		return fail(ReasonMalformedEntry, "certificate: %v", err)
	}
	if len(e.Chain) >= certs.MaxBundleCerts {
		return fail(ReasonMalformedEntry, "chain of %d certificates, at most %d", len(e.Chain), certs.MaxBundleCerts-1)
	}
	for i, der := range e.Chain {
		if len(der) > certs.MaxCertSize {
			return fail(ReasonMalformedEntry, "chain certificate %d is %d bytes, at most %d", i, len(der), certs.MaxCertSize)
		}
		if _, err := x509.ParseCertificate(der); err != nil {
			return fail(ReasonMalformedEntry, "chain certificate %d: %v", i, err)
		}
	}
	return nil
}
