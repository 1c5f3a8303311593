package certs

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.step.sm/crypto/x509util"
)

// UserLifetime is the default validity of a user certificate. The CA
// shortens it to the identity provider's session when that ends sooner.
const UserLifetime = 12 * time.Hour

// UserProfile is everything a user certificate says: who the person is
// (user ID, email, groups, from the identity provider) and which device the
// certificate is bound to. The binding is twofold: the certificate's subject
// key is the device key, the subject key of the device's machine
// certificate, and the device binding extension names the device ID.
type UserProfile struct {
	TrustDomain TrustDomain
	UserID      UserID
	Email       Email   // canonical form, see ParseEmail
	Groups      []Group // distinct; ParseGroups sorts and de-duplicates a claim
	DeviceID    DeviceID
	DeviceKey   crypto.PublicKey // the machine certificate's subject key
	NotBefore   time.Time
	NotAfter    time.Time
}

// Validate checks the profile before anything is signed.
func (p UserProfile) Validate() error {
	if _, err := ParseTrustDomain(string(p.TrustDomain)); err != nil {
		return err
	}
	if _, err := ParseUserID(string(p.UserID)); err != nil {
		return err
	}
	e, err := ParseEmail(string(p.Email))
	if err != nil {
		return err
	}
	if e != p.Email {
		return fmt.Errorf("user profile email %q is not in canonical form %q", p.Email, e)
	}
	if err := checkGroups(p.Groups); err != nil {
		return fmt.Errorf("user profile: %w", err)
	}
	if _, err := ParseDeviceID(string(p.DeviceID)); err != nil {
		return err
	}
	if p.DeviceKey == nil {
		return fmt.Errorf("user profile has no device key")
	}
	if _, err := x509.MarshalPKIXPublicKey(p.DeviceKey); err != nil {
		return fmt.Errorf("user profile device key: %w", err)
	}
	if p.NotBefore.IsZero() || p.NotAfter.IsZero() || !p.NotBefore.Before(p.NotAfter) {
		return fmt.Errorf("user profile validity %s..%s is empty", p.NotBefore.UTC().Format(time.RFC3339), p.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// BindToMachine returns p bound to the device of the machine certificate m,
// which Verify must have accepted (the CA takes it from the mTLS connection
// the login came in on): DeviceID from m's SPIFFE ID in p.TrustDomain, and
// DeviceKey m's subject key.
func (p UserProfile) BindToMachine(m *x509.Certificate) (UserProfile, error) {
	if m == nil || len(m.URIs) != 1 {
		return p, fmt.Errorf("binding user profile: want a machine certificate with one SPIFFE ID")
	}
	dev, err := parseDeviceURI(m.URIs[0], p.TrustDomain)
	if err != nil {
		return p, fmt.Errorf("binding user profile: %w", err)
	}
	p.DeviceID, p.DeviceKey = dev, m.PublicKey
	return p, nil
}

// CheckRequest checks that csr is signed by the device key the profile is
// bound to: the proof that the device asking for the certificate holds it.
func (p UserProfile) CheckRequest(csr *x509.CertificateRequest) error {
	if csr == nil {
		return fmt.Errorf("no certificate request")
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("certificate request signature: %w", err)
	}
	got, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if err != nil {
		return fmt.Errorf("certificate request key: %w", err)
	}
	want, err := x509.MarshalPKIXPublicKey(p.DeviceKey)
	if err != nil {
		return fmt.Errorf("user profile device key: %w", err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("certificate request is not signed by the device key of device %s", p.DeviceID)
	}
	return nil
}

// UserTemplate is the x509util template of a user certificate. The CA
// renders it with the data from UserProfile.TemplateData, for a request
// signed by the device key (UserProfile.CheckRequest). Its subject names
// the user by email for people reading it; peers read only the SANs and
// extensions.
const UserTemplate = `{
	"subject": {"commonName": {{ toJson .CommonName }}},
	"emailAddresses": {{ toJson .EmailAddresses }},
	"uris": {{ toJson .URIs }},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["clientAuth"],
	"extensions": {{ toJson .Extensions }}
}`

// TemplateData renders the profile as x509util template data for
// UserTemplate: the rfc822Name SAN is the email, the URI SAN
// spiffe://<td>/user/<id>, and the extensions are the device binding
// (OIDDeviceBinding, a UTF8String of the device ID) and the groups
// (OIDGroups, a SEQUENCE OF UTF8String, absent without groups). There is no
// WireGuard key extension: a user certificate configures no peer.
//
// The binding holds the bare device ID rather than the device's SPIFFE ID:
// the trust domain is already fixed by the certificate's own URI SAN (which
// Verify requires to be in the pinned trust domain), and peers compare the
// binding with the DeviceID they read from the machine certificate.
func (p UserProfile) TemplateData() (x509util.TemplateData, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	xexts, err := templateExtensions(userExtensions(p.DeviceID, p.Groups))
	if err != nil {
		return nil, err
	}
	return x509util.TemplateData{
		"CommonName":     string(p.Email),
		"EmailAddresses": []string{string(p.Email)},
		"URIs":           []string{UserURI(p.TrustDomain, p.UserID).String()},
		"Extensions":     xexts,
	}, nil
}

// NewUserCertificate renders the user template, ready to be signed, with
// the profile's validity. csr, if not nil, must be signed by p.DeviceKey
// (CheckRequest); with a nil csr the certificate is rendered for
// p.DeviceKey directly, for a CA that takes the key from the verified
// machine certificate.
func NewUserCertificate(csr *x509.CertificateRequest, p UserProfile) (*x509.Certificate, error) {
	data, err := p.TemplateData()
	if err != nil {
		return nil, err
	}
	var c *x509util.Certificate
	if csr == nil {
		c, err = x509util.NewCertificateFromX509(&x509.Certificate{PublicKey: p.DeviceKey}, x509util.WithTemplate(UserTemplate, data))
	} else {
		if err := p.CheckRequest(csr); err != nil {
			return nil, err
		}
		c, err = x509util.NewCertificate(csr, x509util.WithTemplate(UserTemplate, data))
	}
	if err != nil {
		return nil, fmt.Errorf("rendering user certificate template: %w", err)
	}
	cert := c.GetCertificate()
	cert.NotBefore, cert.NotAfter = p.NotBefore, p.NotAfter
	return cert, nil
}

// UserIdentity is what a verified user certificate proves about the person
// using a peer.
type UserIdentity struct {
	UserID    UserID
	Email     Email
	Groups    []Group
	Serial    string
	NotBefore time.Time
	NotAfter  time.Time
}

// InGroup reports whether the user is in group g.
func (u *UserIdentity) InGroup(g Group) bool { return u != nil && slices.Contains(u.Groups, g) }

// DisplayName names the peer for people: "user@domain on hostname" when a
// user certificate was verified, else the hostname followed by its tags,
// "hostname (tag:db, tag:prod)", or the hostname alone. Every part is
// validated ASCII, so it is safe to print.
func (id Identity) DisplayName() string {
	if id.User != nil {
		return string(id.User.Email) + " on " + string(id.Hostname)
	}
	if len(id.Tags) == 0 {
		return string(id.Hostname)
	}
	tags := make([]string, len(id.Tags))
	for i, t := range id.Tags {
		tags[i] = "tag:" + string(t)
	}
	return string(id.Hostname) + " (" + strings.Join(tags, ", ") + ")"
}

// UserError is UserRejected as an error: nil when the bundle carried no
// user certificate or it was accepted.
func (id Identity) UserError() error {
	if id.UserRejected == nil {
		return nil
	}
	return id.UserRejected
}

// NextExpiry is when this verdict next changes by itself: the user
// certificate's NotAfter if one was accepted and ends first (then Verify
// drops the user and keeps the machine), else the machine certificate's.
// An agent re-verifies the bundle then.
func (id Identity) NextExpiry() time.Time {
	if id.User != nil && id.User.NotAfter.Before(id.NotAfter) {
		return id.User.NotAfter
	}
	return id.NotAfter
}
