package certs

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"net/url"
	"regexp"
	"strings"
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
