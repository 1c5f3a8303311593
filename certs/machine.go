package certs

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"go.step.sm/crypto/x509util"
)

// MachineProfile is everything a machine certificate says about a device.
type MachineProfile struct {
	TrustDomain  TrustDomain
	DeviceID     DeviceID
	Hostname     Hostname
	Addresses    []netip.Addr // overlay addresses (IPv4 and IPv6 ULA)
	WireGuardKey WireGuardKey
	Attestation  AttestationLevel
	// EK is the fingerprint of the TPM's endorsement key; required for
	// attestation level tpm, absent otherwise.
	EK   EKFingerprint
	Tags []Tag
	// Routes are the prefixes the device may route (subnet router; a
	// default route makes it an exit node), Services what it offers by
	// name. The CA signs only admin-approved ones (see CheckRoutes).
	Routes   []netip.Prefix
	Services []Service
}

// Validate checks the profile before anything is signed.
func (p MachineProfile) Validate() error {
	if _, err := ParseTrustDomain(string(p.TrustDomain)); err != nil {
		return err
	}
	if _, err := ParseDeviceID(string(p.DeviceID)); err != nil {
		return err
	}
	if _, err := ParseHostname(string(p.Hostname)); err != nil {
		return err
	}
	if len(p.Addresses) == 0 {
		return fmt.Errorf("machine profile has no overlay address")
	}
	if p.WireGuardKey.IsZero() {
		return fmt.Errorf("machine profile has no WireGuard key")
	}
	if !p.Attestation.Valid() {
		return fmt.Errorf("machine profile has unknown attestation level %q", p.Attestation)
	}
	if p.EK != "" {
		if _, err := ParseEKFingerprint(string(p.EK)); err != nil {
			return fmt.Errorf("machine profile: %w", err)
		}
	}
	if (p.Attestation == AttestationTPM) != (p.EK != "") {
		return fmt.Errorf("machine profile: attestation level tpm needs an EK fingerprint, and only it has one")
	}
	if err := CheckRoutes(p.Routes, nil); err != nil {
		return fmt.Errorf("machine profile: %w", err)
	}
	if err := CheckServices(p.Services); err != nil {
		return fmt.Errorf("machine profile: %w", err)
	}
	return nil
}

// MachineTemplate is the x509util template of a machine certificate. The
// CA renders it with the data from MachineProfile.TemplateData.
const MachineTemplate = `{
	"subject": {"commonName": {{ toJson .CommonName }}},
	"uris": {{ toJson .URIs }},
	"dnsNames": {{ toJson .DNSNames }},
	"ipAddresses": {{ toJson .IPAddresses }},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["clientAuth"],
	"extensions": {{ toJson .Extensions }}
}`

// TemplateData renders the profile as x509util template data for
// MachineTemplate.
func (p MachineProfile) TemplateData() (x509util.TemplateData, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	xexts, err := templateExtensions(machineExtensions(p.WireGuardKey, p.Attestation, p.EK, p.Tags, p.Routes, p.Services))
	if err != nil {
		return nil, err
	}
	ips := make([]string, len(p.Addresses))
	for i, a := range p.Addresses {
		ips[i] = a.String()
	}
	return x509util.TemplateData{
		"CommonName":  p.Hostname.FQDN(p.TrustDomain),
		"URIs":        []string{DeviceURI(p.TrustDomain, p.DeviceID).String()},
		"DNSNames":    []string{p.Hostname.FQDN(p.TrustDomain)},
		"IPAddresses": ips,
		"Extensions":  xexts,
	}, nil
}

// NewMachineCertificate renders the machine template for a CSR, ready to be
// signed. Validity is set by the caller (the CA, or tests).
func NewMachineCertificate(csr *x509.CertificateRequest, p MachineProfile) (*x509.Certificate, error) {
	data, err := p.TemplateData()
	if err != nil {
		return nil, err
	}
	c, err := x509util.NewCertificate(csr, x509util.WithTemplate(MachineTemplate, data))
	if err != nil {
		return nil, fmt.Errorf("rendering machine certificate template: %w", err)
	}
	return c.GetCertificate(), nil
}

// Identity is what a verified bundle proves about a peer: the device (from
// the machine certificate) and, optionally, its user.
type Identity struct {
	TrustDomain  TrustDomain
	DeviceID     DeviceID
	Hostname     Hostname
	Addresses    []netip.Addr
	WireGuardKey WireGuardKey
	Attestation  AttestationLevel
	EK           EKFingerprint // level tpm: the TPM's endorsement key
	Tags         []Tag
	// Routes and Services are what the machine certificate's extensions
	// .4 and .7 certify (nil: none); Verify checked the routes against the
	// overlay ranges of the chain's name constraints.
	Routes    []netip.Prefix
	Services  []Service
	Serial    string
	NotBefore time.Time
	NotAfter  time.Time
	// DeviceKey is the machine certificate's subject key, the device key
	// (ECDSA P-256, software or in a TPM): what the device signs its
	// endpoint advertisements with (package endpoint).
	DeviceKey crypto.PublicKey

	// User is the person using the peer, when the bundle carries a user
	// certificate that Verify accepted; nil otherwise.
	User *UserIdentity
	// UserRejected says why the bundle's user certificate was not accepted
	// (a Reason of the user-* kind): expired, forged, bound to another
	// device... The machine identity above stands regardless; see Verify.
	// nil when there was no user certificate or it was accepted.
	UserRejected *RejectError
}

// AllowedIPs returns the host prefixes (/32, /128) of the peer's addresses,
// the only AllowedIPs an agent ever configures for it.
func (id Identity) AllowedIPs() []netip.Prefix {
	out := make([]netip.Prefix, len(id.Addresses))
	for i, a := range id.Addresses {
		out[i] = netip.PrefixFrom(a, a.BitLen())
	}
	return out
}

// HasRoute reports whether p is one of the certified routes.
func (id Identity) HasRoute(p netip.Prefix) bool { return slices.Contains(id.Routes, p) }

// ExitNode reports whether the peer is certified as an exit node.
func (id Identity) ExitNode() bool { return slices.ContainsFunc(id.Routes, IsExitRoute) }

// HasAddress reports whether addr is one of the certified addresses.
func (id Identity) HasAddress(addr netip.Addr) bool { return slices.Contains(id.Addresses, addr) }
