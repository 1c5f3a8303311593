package testca

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// issue is what the options of one issuance set.
type issue struct {
	notBefore, notAfter time.Time
	issuer              *certs.KeyPair
	selfSigned          bool
	intermediates       []*x509.Certificate
	setIntermediates    bool
	deviceKey           crypto.Signer
	edits               []func(*x509.Certificate) error
	userEdits           []func(*certs.UserProfile)
}

// Option changes one issuance, mostly to make a certificate a peer must
// reject.
type Option func(*issue)

// WithValidity sets the certificate's validity window.
func WithValidity(notBefore, notAfter time.Time) Option {
	return func(o *issue) { o.notBefore, o.notAfter = notBefore, notAfter }
}

// WithIssuer signs with kp instead of the CA's intermediate (another CA's
// intermediate, a leaf, ...). The bundle carries kp's certificate as its
// intermediate unless WithIntermediates says otherwise.
func WithIssuer(kp *certs.KeyPair) Option { return func(o *issue) { o.issuer = kp } }

// WithSelfSigned signs the certificate with its own device key. The bundle
// carries no intermediate unless WithIntermediates says otherwise.
func WithSelfSigned() Option { return func(o *issue) { o.selfSigned = true } }

// WithIntermediates replaces the intermediates the bundle carries (none if
// called without arguments).
func WithIntermediates(cs ...*x509.Certificate) Option {
	return func(o *issue) { o.intermediates, o.setIntermediates = cs, true }
}

// WithDeviceKey uses key as the device key (the certificate's subject key)
// instead of a fresh P-256 key. For a user certificate, key's public half
// replaces the machine certificate's subject key: a user certificate whose
// key differs from its device's.
func WithDeviceKey(key crypto.Signer) Option { return func(o *issue) { o.deviceKey = key } }

// WithUserProfile edits the user profile before the user certificate is
// rendered. IssueMachine ignores it.
func WithUserProfile(edit func(*certs.UserProfile)) Option {
	return func(o *issue) { o.userEdits = append(o.userEdits, edit) }
}

// WithEmail sets the user's email address (canonical form, see
// certs.ParseEmail). IssueMachine ignores it.
func WithEmail(email string) Option {
	return WithUserProfile(func(p *certs.UserProfile) { p.Email = certs.Email(email) })
}

// WithGroups sets the user's groups, in this order. IssueMachine ignores
// it.
func WithGroups(groups ...string) Option {
	return WithUserProfile(func(p *certs.UserProfile) {
		p.Groups = nil
		for _, g := range groups {
			p.Groups = append(p.Groups, certs.Group(g))
		}
	})
}

// WithUserID sets the user ID. IssueMachine ignores it.
func WithUserID(id certs.UserID) Option {
	return WithUserProfile(func(p *certs.UserProfile) { p.UserID = id })
}

// WithBoundDevice binds the user certificate to device id instead of the
// machine certificate's device (the subject key stays the machine's).
// IssueMachine ignores it.
func WithBoundDevice(id certs.DeviceID) Option {
	return WithUserProfile(func(p *certs.UserProfile) { p.DeviceID = id })
}

// WithEmails replaces the email SANs (none if called without arguments).
func WithEmails(emails ...string) Option {
	return WithTemplate(func(c *x509.Certificate) { c.EmailAddresses = slices.Clone(emails) })
}

// WithTemplate edits the rendered certificate template just before it is
// signed, for anything the other options do not cover (IsCA, EKUs, ...).
func WithTemplate(edit func(*x509.Certificate)) Option {
	return func(o *issue) {
		o.edits = append(o.edits, func(c *x509.Certificate) error { edit(c); return nil })
	}
}

// WithIPs replaces the IP SANs (none if called without arguments).
func WithIPs(addrs ...netip.Addr) Option {
	return WithTemplate(func(c *x509.Certificate) {
		c.IPAddresses = nil
		for _, a := range addrs {
			c.IPAddresses = append(c.IPAddresses, net.IP(a.AsSlice()))
		}
	})
}

// WithURIs replaces the URI SANs (none if called without arguments).
func WithURIs(uris ...string) Option {
	return func(o *issue) {
		o.edits = append(o.edits, func(c *x509.Certificate) error {
			c.URIs = nil
			for _, s := range uris {
				u, err := url.Parse(s)
				if err != nil {
					return err
				}
				c.URIs = append(c.URIs, u)
			}
			return nil
		})
	}
}

// WithDNSNames replaces the DNS SANs (none if called without arguments).
func WithDNSNames(names ...string) Option {
	return WithTemplate(func(c *x509.Certificate) { c.DNSNames = slices.Clone(names) })
}

// WithExtension replaces the extension with ext's OID, or adds ext if the
// certificate has none.
func WithExtension(ext pkix.Extension) Option {
	return WithTemplate(func(c *x509.Certificate) {
		for i, e := range c.ExtraExtensions {
			if e.Id.Equal(ext.Id) {
				c.ExtraExtensions[i] = ext
				return
			}
		}
		c.ExtraExtensions = append(c.ExtraExtensions, ext)
	})
}

// WithoutExtension drops the extension with this OID.
func WithoutExtension(oid asn1.ObjectIdentifier) Option {
	return WithTemplate(func(c *x509.Certificate) {
		c.ExtraExtensions = slices.DeleteFunc(c.ExtraExtensions, func(e pkix.Extension) bool { return e.Id.Equal(oid) })
	})
}

// WithDuplicateExtension repeats the extension with this OID. Go refuses to
// parse the result: use IssueMachineWire.
func WithDuplicateExtension(oid asn1.ObjectIdentifier) Option {
	return func(o *issue) {
		o.edits = append(o.edits, func(c *x509.Certificate) error {
			for _, e := range c.ExtraExtensions {
				if e.Id.Equal(oid) {
					c.ExtraExtensions = append(c.ExtraExtensions, e)
					return nil
				}
			}
			return fmt.Errorf("no extension %s to duplicate", oid)
		})
	}
}

// WithWireGuardKeyBytes replaces the WireGuard key extension by an OCTET
// STRING holding b (any length, all zero, another peer's key...).
func WithWireGuardKeyBytes(b []byte) Option {
	return WithExtension(pkix.Extension{Id: certs.OIDWireGuardKey, Value: OctetString(b)})
}

// OctetString is the DER of an OCTET STRING holding b.
func OctetString(b []byte) []byte {
	der, err := asn1.Marshal(b)
	if err != nil {
		panic(err) // cannot happen for a []byte
	}
	return der
}

// UTF8String is the DER of a UTF8String holding s.
func UTF8String(s string) []byte {
	der, err := asn1.MarshalWithParams(s, "utf8")
	if err != nil {
		panic(err)
	}
	return der
}

// options applies opts over the defaults: a validity of life from a minute
// ago, signed by the intermediate.
func (ca *CA) options(opts []Option, life time.Duration) *issue {
	now := time.Now()
	o := &issue{notBefore: now.Add(-time.Minute), notAfter: now.Add(life), issuer: ca.inter}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// finish sets the validity of the rendered template, applies the edits,
// and returns the issuing key pair (the certificate itself, signed with
// key, for WithSelfSigned). It sets o.intermediates to the issuer unless
// WithIntermediates or WithSelfSigned did.
func (o *issue) finish(t testing.TB, tmpl *x509.Certificate, key crypto.Signer) *certs.KeyPair {
	t.Helper()
	tmpl.NotBefore, tmpl.NotAfter = o.notBefore, o.notAfter
	for _, edit := range o.edits {
		if err := edit(tmpl); err != nil {
			t.Fatalf("testca: %v", err)
		}
	}
	parent := o.issuer
	if o.selfSigned {
		parent = &certs.KeyPair{Cert: tmpl, Key: key}
	}
	if !o.setIntermediates && !o.selfSigned {
		o.intermediates = []*x509.Certificate{parent.Cert}
	}
	return parent
}
