package certs

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// TrustDomain is the DNS-like name of a certmesh deployment, e.g.
// "corp.example". It is the SPIFFE trust domain and the DNS suffix of peers.
type TrustDomain string

var trustDomainRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// ParseTrustDomain validates a trust domain name.
func ParseTrustDomain(s string) (TrustDomain, error) {
	if len(s) > 200 || !trustDomainRE.MatchString(s) {
		return "", fmt.Errorf("invalid trust domain %q: want a lower-case DNS name such as corp.example", s)
	}
	return TrustDomain(s), nil
}

func (td TrustDomain) String() string { return string(td) }

// DeviceID names one enrolled device. It is random, lower-case base32.
type DeviceID string

var deviceIDRE = regexp.MustCompile(`^[a-z2-7]{16,64}$`)

// NewDeviceID returns a fresh random device ID.
func NewDeviceID() (DeviceID, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating device ID: %w", err)
	}
	return DeviceID(strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))), nil
}

// ParseDeviceID validates a device ID.
func ParseDeviceID(s string) (DeviceID, error) {
	if !deviceIDRE.MatchString(s) {
		return "", fmt.Errorf("invalid device ID %q", s)
	}
	return DeviceID(s), nil
}

func (id DeviceID) String() string { return string(id) }

// Hostname is a node's short name, a single DNS label.
type Hostname string

var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ParseHostname validates and lower-cases a hostname label.
func ParseHostname(s string) (Hostname, error) {
	s = strings.ToLower(s)
	if !hostnameRE.MatchString(s) {
		return "", fmt.Errorf("invalid hostname %q: want one DNS label (letters, digits, '-')", s)
	}
	return Hostname(s), nil
}

// FQDN is the node's DNS name inside the trust domain.
func (h Hostname) FQDN(td TrustDomain) string { return string(h) + "." + string(td) }

// AttestationLevel says how the CA verified the device key.
type AttestationLevel string

const (
	// AttestationToken: enrolled with a one-time admin token; software device key.
	AttestationToken AttestationLevel = "token"
	// AttestationTPM: device key inside a TPM 2.0, attested to the CA.
	AttestationTPM AttestationLevel = "tpm"
)

// Valid reports whether the level is one certmesh knows.
func (l AttestationLevel) Valid() bool { return l == AttestationToken || l == AttestationTPM }

// EKFingerprint names a TPM: the SHA-256 of its endorsement key's
// SubjectPublicKeyInfo, 64 lower-case hex digits. A machine certificate of
// attestation level tpm carries it.
type EKFingerprint string

var ekFPRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseEKFingerprint validates an EK fingerprint (hex, colons allowed,
// either case) and returns it in canonical form.
func ParseEKFingerprint(s string) (EKFingerprint, error) {
	c := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if !ekFPRE.MatchString(c) {
		return "", fmt.Errorf("invalid EK fingerprint %q: want the 64 hex digits of a SHA-256", s)
	}
	return EKFingerprint(c), nil
}

// Tag is an admin-assigned label such as "tag:db" (stored without the prefix).
type Tag string

var tagRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62})$`)

// ParseTag validates a tag name (with or without the "tag:" prefix).
func ParseTag(s string) (Tag, error) {
	s = strings.TrimPrefix(s, "tag:")
	if !tagRE.MatchString(s) {
		return "", fmt.Errorf("invalid tag %q: want lower-case letters, digits and '-'", s)
	}
	return Tag(s), nil
}

// SPIFFE IDs of the kinds of subject certmesh issues for.
const (
	spiffeDevicePath = "/device/"
	spiffeUserPath   = "/user/"
	spiffeServerPath = "/server"
)

// DeviceURI returns spiffe://<td>/device/<id>.
func DeviceURI(td TrustDomain, id DeviceID) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: string(td), Path: spiffeDevicePath + string(id)}
}

// ServerURI returns spiffe://<td>/server, the identity of the CA and
// coordinator's TLS certificate.
func ServerURI(td TrustDomain) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: string(td), Path: spiffeServerPath}
}

// ServerName is the DNS name the CA and coordinator present and agents check,
// whatever address they dial.
func ServerName(td TrustDomain) string { return "server." + string(td) }

// parseDeviceURI extracts the device ID from spiffe://<td>/device/<id>.
func parseDeviceURI(u *url.URL, td TrustDomain) (DeviceID, error) {
	if u.Scheme != "spiffe" || u.Host != string(td) || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("URI SAN %q is not a SPIFFE ID in trust domain %q", u, td)
	}
	rest, ok := strings.CutPrefix(u.Path, spiffeDevicePath)
	if !ok {
		return "", fmt.Errorf("URI SAN %q is not a device ID", u)
	}
	return ParseDeviceID(rest)
}

// UserID is the stable identifier of a person, the last segment of the URI
// SAN spiffe://<td>/user/<id> of a user certificate. It does not change when
// the person's email address does. The CA derives it with DeriveUserID from
// the identity provider's issuer and subject, or assigns one itself. It is
// one SPIFFE path segment: lower-case letters, digits, '.', '-' and '_',
// starting and ending with a letter or digit, at most 64 characters.
type UserID string

var userIDRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// ParseUserID validates a user ID.
func ParseUserID(s string) (UserID, error) {
	if !userIDRE.MatchString(s) {
		return "", fmt.Errorf("invalid user ID %q: want 1 to 64 lower-case letters, digits, '.', '-' or '_', starting and ending with a letter or digit", s)
	}
	return UserID(s), nil
}

// DeriveUserID returns the user ID of the OIDC subject sub at issuer iss: the
// first 160 bits of SHA-256 over both (each length-prefixed), in lower-case
// base32 (32 characters). OIDC guarantees that (iss, sub) is stable and
// unique for a person, unlike the email address.
func DeriveUserID(issuer, subject string) UserID {
	h := sha256.New()
	for _, s := range []string{issuer, subject} {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	sum := h.Sum(nil)
	return UserID(strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:20])))
}

func (id UserID) String() string { return string(id) }

// Email is a user's verified email address, the rfc822Name SAN of a user
// certificate. It is kept in canonical form: all lower-case (certmesh treats
// addresses case-insensitively, as identity providers do), an unquoted
// dot-atom local part of at most 64 ASCII characters, and a DNS domain of at
// least two labels; at most 254 characters in all. Quoted local parts,
// comments, address literals and non-ASCII addresses are refused: they
// cannot be compared reliably, and x509 cannot carry the latter.
type Email string

var (
	emailLocalRE  = regexp.MustCompile("^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
	emailDomainRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$`)
)

// MaxEmailLength bounds an email address (RFC 5321's path limit less the
// angle brackets).
const MaxEmailLength = 254

// ParseEmail validates an email address and returns it in canonical
// (lower-case) form.
func ParseEmail(s string) (Email, error) {
	if len(s) > MaxEmailLength {
		return "", fmt.Errorf("invalid email address: %d characters, at most %d allowed", len(s), MaxEmailLength)
	}
	c := strings.ToLower(s)
	local, domain, ok := strings.Cut(c, "@")
	if !ok || len(local) > 64 || !emailLocalRE.MatchString(local) || !emailDomainRE.MatchString(domain) {
		return "", fmt.Errorf("invalid email address %q: want local@domain.example, ASCII, no quotes or comments", s)
	}
	return Email(c), nil
}

// Local is the part before the '@'.
func (e Email) Local() string { l, _, _ := strings.Cut(string(e), "@"); return l }

// Domain is the part after the '@'.
func (e Email) Domain() string { _, d, _ := strings.Cut(string(e), "@"); return d }

func (e Email) String() string { return string(e) }

// Group is a group the identity provider says a user belongs to, as it
// names it ("eng", "/admins/db", "Platform Team", an Entra object ID...).
// It is 1 to MaxGroupLength bytes of printable UTF-8 (letters, marks,
// digits, punctuation, symbols and the ASCII space; no control or
// formatting characters such as bidirectional overrides), without leading
// or trailing space.
type Group string

// Bounds of the groups a user certificate carries. A user in more groups
// must have them filtered by the CA (for instance to the allowed groups).
const (
	MaxGroups      = 64
	MaxGroupLength = 128
)

// ParseGroup validates a group name.
func ParseGroup(s string) (Group, error) {
	if len(s) == 0 || len(s) > MaxGroupLength {
		return "", fmt.Errorf("invalid group %q: want 1 to %d bytes", s, MaxGroupLength)
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("invalid group %q: not UTF-8", s)
	}
	if strings.TrimSpace(s) != s {
		return "", fmt.Errorf("invalid group %q: leading or trailing space", s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return "", fmt.Errorf("invalid group %q: contains %U", s, r)
		}
	}
	return Group(s), nil
}

// ParseGroups validates the groups of an identity-provider claim and
// returns them sorted, without duplicates, the form a user certificate
// carries them in. More than MaxGroups distinct groups is an error.
func ParseGroups(ss []string) ([]Group, error) {
	out := make([]Group, 0, len(ss))
	for _, s := range ss {
		g, err := ParseGroup(s)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxGroups {
		return nil, fmt.Errorf("%d groups, at most %d allowed", len(out), MaxGroups)
	}
	return out, nil
}

// checkGroups validates groups as a user certificate must carry them.
func checkGroups(gs []Group) error {
	if len(gs) > MaxGroups {
		return fmt.Errorf("%d groups, at most %d allowed", len(gs), MaxGroups)
	}
	seen := make(map[Group]bool, len(gs))
	for _, g := range gs {
		if _, err := ParseGroup(string(g)); err != nil {
			return err
		}
		if seen[g] {
			return fmt.Errorf("group %q appears twice", g)
		}
		seen[g] = true
	}
	return nil
}

// UserURI returns spiffe://<td>/user/<id>.
func UserURI(td TrustDomain, id UserID) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: string(td), Path: spiffeUserPath + string(id)}
}

// parseUserURI extracts the user ID from spiffe://<td>/user/<id>.
func parseUserURI(u *url.URL, td TrustDomain) (UserID, error) {
	if u.Scheme != "spiffe" || u.Host != string(td) || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.RawPath != "" {
		return "", fmt.Errorf("URI SAN %q is not a SPIFFE ID in trust domain %q", u, td)
	}
	rest, ok := strings.CutPrefix(u.Path, spiffeUserPath)
	if !ok {
		return "", fmt.Errorf("URI SAN %q is not a user ID", u)
	}
	return ParseUserID(rest)
}
