package testca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/certmesh/certmesh/certs"
)

// UserLifetime is the validity of a user certificate issued without
// WithValidity: from a minute ago, for certs.UserLifetime (12 hours).
const UserLifetime = certs.UserLifetime

// OIDCIssuer is the identity-provider issuer NewUserProfile derives user
// IDs from.
const OIDCIssuer = "https://idp.test"

// NewUserProfile returns a valid user profile in the CA's trust domain,
// bound to the device of the machine certificate (its device ID and
// subject key): a new person user-<n>@example.com whose ID is derived from
// OIDCIssuer and subject user-<n>, no groups, valid from a minute ago for
// UserLifetime.
func (ca *CA) NewUserProfile(t testing.TB, machine *x509.Certificate) certs.UserProfile {
	t.Helper()
	ca.mu.Lock()
	ca.users++
	n := ca.users
	ca.mu.Unlock()
	sub := fmt.Sprintf("user-%d", n)
	now := time.Now()
	p, err := certs.UserProfile{
		TrustDomain: ca.td,
		UserID:      certs.DeriveUserID(OIDCIssuer, sub),
		Email:       certs.Email(sub + "@example.com"),
		NotBefore:   now.Add(-time.Minute),
		NotAfter:    now.Add(UserLifetime),
	}.BindToMachine(machine)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return p
}

// IssueUser issues a user certificate for a new person (NewUserProfile),
// bound to the device of machine's machine certificate, signed by the
// CA's intermediate, and returns machine with it as the user certificate.
// The bundle keeps machine's intermediates; with WithIssuer it also
// carries the other issuer's certificate (so that the forgery is complete),
// and WithIntermediates replaces them all. Options: WithEmail, WithGroups,
// WithUserID, WithUserProfile for the profile; WithDeviceKey (another
// subject key), WithBoundDevice (another device's binding), WithIssuer
// (another CA), WithSelfSigned, WithValidity, and the SAN and extension
// edits for the rest.
func (ca *CA) IssueUser(t testing.TB, machine certs.Bundle, opts ...Option) certs.Bundle {
	t.Helper()
	o, tmpl, parent, pub := ca.prepareUser(t, machine.Machine, opts)
	cert, err := x509util.CreateCertificate(tmpl, parent.Cert, pub, parent.Key)
	if err != nil {
		t.Fatalf("testca: signing user certificate (tampering Go cannot parse needs IssueUserWire): %v", err)
	}
	b := machine
	b.Intermediates = userIntermediates(o, machine.Intermediates)
	b.User = cert
	return b
}

// IssueUserWire is IssueUser without parsing the result: the bundle as
// DER, as a hostile coordinator could send it, even if Go cannot parse the
// user certificate.
func (ca *CA) IssueUserWire(t testing.TB, machine certs.Bundle, opts ...Option) certs.WireBundle {
	t.Helper()
	o, tmpl, parent, pub := ca.prepareUser(t, machine.Machine, opts)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, pub, parent.Key)
	if err != nil {
		t.Fatalf("testca: signing user certificate: %v", err)
	}
	b := machine
	b.Intermediates = userIntermediates(o, machine.Intermediates)
	b.User = nil
	w := b.Wire()
	w.User = der
	return w
}

// userIntermediates are the intermediates of a bundle with a user
// certificate issued with o.
func userIntermediates(o *issue, machine []*x509.Certificate) []*x509.Certificate {
	if o.setIntermediates {
		return o.intermediates
	}
	out := slices.Clone(machine)
	for _, c := range o.intermediates {
		if !slices.ContainsFunc(out, c.Equal) {
			out = append(out, c)
		}
	}
	return out
}

// prepareUser renders the user template for a profile bound to machine,
// with the options applied, and returns it with the issuing key pair and
// the subject key.
func (ca *CA) prepareUser(t testing.TB, machine *x509.Certificate, opts []Option) (*issue, *x509.Certificate, *certs.KeyPair, crypto.PublicKey) {
	t.Helper()
	o := ca.options(opts, UserLifetime)
	p := ca.NewUserProfile(t, machine)
	key := o.deviceKey
	if key == nil && o.selfSigned {
		key = newKey(t) // a self-signed certificate needs the subject's private key
	}
	if key != nil {
		p.DeviceKey = key.Public()
	}
	for _, edit := range o.userEdits {
		edit(&p)
	}
	tmpl, err := certs.NewUserCertificate(nil, p)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	parent := o.finish(t, tmpl, key)
	return o, tmpl, parent, tmpl.PublicKey
}
