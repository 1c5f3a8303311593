// Package testca is a throw-away certmesh PKI for tests: a root and a
// name-constrained intermediate made with certs.NewRoot/NewIntermediate,
// machine certificates issued the way the CA issues them (a CSR from the
// device key, certs.NewMachineCertificate, signed by the intermediate), and
// user certificates bound to a machine certificate's device
// (certs.NewUserCertificate for its device ID and subject key).
//
// Options tamper with an issued certificate for attack tests: another
// issuer, a validity window, replaced SANs, extension overrides, and for
// user certificates another subject key or device binding. Tampering that
// Go itself refuses to parse (a duplicated extension) needs
// IssueMachineWire or IssueUserWire, which return the DER as it would
// travel.
//
// CRLs: IssueCRL signs one as the CA does (certs.NewCRL with the
// intermediate); SignCRL signs any template with any name and key (a leaf,
// another CA, a forged issuer name), and IssueIntermediate makes further
// intermediates under the root (a rotation, a CA without cRLSign).
package testca

import (
	"crypto"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/certmesh/certmesh/certs"
)

// MachineLifetime is the validity of a machine certificate issued without
// WithValidity: from a minute ago, for 24 hours (the design's default).
const MachineLifetime = 24 * time.Hour

// UserLifetime is the validity of a user certificate issued without
// WithValidity: from a minute ago, for certs.UserLifetime (12 hours).
const UserLifetime = certs.UserLifetime

// OIDCIssuer is the identity-provider issuer NewUserProfile derives user
// IDs from.
const OIDCIssuer = "https://idp.test"

// DefaultOverlays are the overlay ranges of a CA made without any: the
// CGNAT range for IPv4 and a ULA /48 for IPv6.
var DefaultOverlays = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("fd7a:c3e7:5e00::/48"),
}

// CA is a test PKI of one trust domain.
type CA struct {
	td       certs.TrustDomain
	overlays []netip.Prefix
	root     *certs.KeyPair
	inter    *certs.KeyPair
	roots    *certs.Roots

	mu            sync.Mutex
	host          uint32 // host number of the last address NewProfile handed out
	users         uint32 // number of the last user NewUserProfile made up
	intermediates int    // number of intermediates IssueIntermediate made
}

// New creates a root and an intermediate constrained to td and the overlay
// ranges (DefaultOverlays if none), both valid from a minute ago.
func New(t testing.TB, td certs.TrustDomain, overlays ...netip.Prefix) *CA {
	t.Helper()
	if _, err := certs.ParseTrustDomain(string(td)); err != nil {
		t.Fatalf("testca: %v", err)
	}
	if len(overlays) == 0 {
		overlays = DefaultOverlays
	}
	now := time.Now()
	root, err := certs.NewRoot(td, now)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	inter, err := certs.NewIntermediate(root, td, overlays, now)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	roots, err := certs.NewRoots(td, root.Cert)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return &CA{td: td, overlays: slices.Clone(overlays), root: root, inter: inter, roots: roots}
}

// FromKeyPairs wraps an existing PKI, e.g. the root certificate and the
// intermediate (with its key) of a real CA's state directory, so that tests
// can issue with a real issuing key what that CA never would. root.Key may
// be nil: only the intermediate signs. overlays are the ranges NewProfile
// allocates from (DefaultOverlays if none); NewProfile starts at the first
// host address, which a real CA may already have allocated.
func FromKeyPairs(t testing.TB, td certs.TrustDomain, root, inter *certs.KeyPair, overlays ...netip.Prefix) *CA {
	t.Helper()
	if _, err := certs.ParseTrustDomain(string(td)); err != nil {
		t.Fatalf("testca: %v", err)
	}
	if root == nil || root.Cert == nil || inter == nil || inter.Cert == nil || inter.Key == nil {
		t.Fatalf("testca: FromKeyPairs needs a root certificate and an intermediate with its key")
	}
	if len(overlays) == 0 {
		overlays = DefaultOverlays
	}
	roots, err := certs.NewRoots(td, root.Cert)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return &CA{td: td, overlays: slices.Clone(overlays), root: root, inter: inter, roots: roots}
}

// TrustDomain is the CA's trust domain.
func (ca *CA) TrustDomain() certs.TrustDomain { return ca.td }

// Overlays are the ranges the intermediate is constrained to.
func (ca *CA) Overlays() []netip.Prefix { return slices.Clone(ca.overlays) }

// Roots is what an agent of this trust domain pins.
func (ca *CA) Roots() *certs.Roots { return ca.roots }

// Root is the self-signed root and its key.
func (ca *CA) Root() *certs.KeyPair { return ca.root }

// Intermediate is the issuing CA and its key.
func (ca *CA) Intermediate() *certs.KeyPair { return ca.inter }

// IssueServer issues the CA/coordinator TLS certificate (server.<td>,
// spiffe://<td>/server) with certs.NewServerCertificate.
func (ca *CA) IssueServer(t testing.TB) *certs.KeyPair {
	t.Helper()
	kp, err := certs.NewServerCertificate(ca.inter, ca.td, time.Now())
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return kp
}

// NewProfile returns a valid machine profile in the CA's trust domain: a new
// device ID, the next unused host address of each overlay range, a random
// WireGuard key, attestation "token", no tags.
func (ca *CA) NewProfile(t testing.TB, hostname string) certs.MachineProfile {
	t.Helper()
	h, err := certs.ParseHostname(hostname)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	ca.mu.Lock()
	ca.host++
	n := ca.host
	ca.mu.Unlock()
	addrs := make([]netip.Addr, len(ca.overlays))
	for i, p := range ca.overlays {
		addrs[i] = hostAddr(p, n)
	}
	return certs.MachineProfile{
		TrustDomain:  ca.td,
		DeviceID:     NewDeviceID(t),
		Hostname:     h,
		Addresses:    addrs,
		WireGuardKey: RandomWireGuardKey(t),
		Attestation:  certs.AttestationToken,
	}
}

// hostAddr is the n-th address of p (n counted from the network address).
func hostAddr(p netip.Prefix, n uint32) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := len(b) - 1; i >= 0 && n > 0; i-- {
		s := uint32(b[i]) + n&0xff
		b[i] = byte(s)
		n = n>>8 + s>>8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// RandomWireGuardKey returns the public key of a fresh X25519 key pair.
func RandomWireGuardKey(t testing.TB) certs.WireGuardKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	wg, err := certs.WireGuardKeyFromBytes(k.PublicKey().Bytes())
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return wg
}

// NewDeviceID returns a fresh random device ID.
func NewDeviceID(t testing.TB) certs.DeviceID {
	t.Helper()
	id, err := certs.NewDeviceID()
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return id
}

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

// IssueMachine issues a machine certificate for p, signed by the CA's
// intermediate with x509util.CreateCertificate as the CA does, and returns
// the bundle a peer would publish (machine certificate and intermediate) and
// the device key.
func (ca *CA) IssueMachine(t testing.TB, p certs.MachineProfile, opts ...Option) (certs.Bundle, crypto.Signer) {
	t.Helper()
	o, tmpl, parent, key := ca.prepare(t, p, opts)
	cert, err := x509util.CreateCertificate(tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatalf("testca: signing machine certificate (tampering Go cannot parse needs IssueMachineWire): %v", err)
	}
	return certs.Bundle{Machine: cert, Intermediates: o.intermediates}, key
}

// IssueMachineWire is IssueMachine without parsing the result: the bundle
// as DER, as a hostile coordinator could send it, even if Go cannot parse
// the machine certificate.
func (ca *CA) IssueMachineWire(t testing.TB, p certs.MachineProfile, opts ...Option) (certs.WireBundle, crypto.Signer) {
	t.Helper()
	o, tmpl, parent, key := ca.prepare(t, p, opts)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatalf("testca: signing machine certificate: %v", err)
	}
	w := certs.WireBundle{Machine: der}
	for _, c := range o.intermediates {
		w.Intermediates = append(w.Intermediates, c.Raw)
	}
	return w, key
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

// prepare renders the template for p with the options applied and returns
// it with the issuing key pair and the device key.
func (ca *CA) prepare(t testing.TB, p certs.MachineProfile, opts []Option) (*issue, *x509.Certificate, *certs.KeyPair, crypto.Signer) {
	t.Helper()
	o := ca.options(opts, MachineLifetime)
	key := o.deviceKey
	if key == nil {
		key = newKey(t)
	}
	csr, err := x509util.CreateCertificateRequest("", nil, key)
	if err != nil {
		t.Fatalf("testca: creating CSR: %v", err)
	}
	tmpl, err := certs.NewMachineCertificate(csr, p)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return o, tmpl, o.finish(t, tmpl, key), key
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := certs.NewKey()
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return k
}

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

// IssueCRL signs a CRL with the CA's intermediate, as the CA does
// (certs.NewCRL), and returns its DER.
func (ca *CA) IssueCRL(t testing.TB, number int64, thisUpdate, nextUpdate time.Time, revoked ...certs.RevokedCert) []byte {
	t.Helper()
	der, err := certs.NewCRL(ca.inter, big.NewInt(number), thisUpdate, nextUpdate, revoked)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return der
}

// Revoked is the CRL entry of cert: revoked a minute ago for reason.
func Revoked(cert *x509.Certificate, reason int) certs.RevokedCert {
	return certs.RevokedCert{Serial: cert.SerialNumber, RevokedAt: time.Now().Add(-time.Minute), Reason: reason}
}

// CRLTemplate is the template of a CRL with these fields, for SignCRL.
// Edit it (ExtraExtensions, entries' ExtraExtensions, a negative number...)
// to make a CRL NewCRL never would.
func CRLTemplate(number int64, thisUpdate, nextUpdate time.Time, revoked ...certs.RevokedCert) *x509.RevocationList {
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	for _, r := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: r.Serial, RevocationTime: r.RevokedAt, ReasonCode: r.Reason,
		})
	}
	return tmpl
}

// SignCRL signs tmpl with key, naming as issuer the subject of name and as
// authority key ID its subject key ID (or, if it has none, the SHA-1 of
// its public key), for attack tests: a CRL signed by a leaf (name and key
// of a machine certificate), by another CA, by a CA without cRLSign, or
// naming the intermediate but signed with another key. Unlike
// certs.NewCRL and x509.CreateRevocationList it does not require name to be
// a CA with cRLSign or key to be name's.
func SignCRL(t testing.TB, name *x509.Certificate, key crypto.Signer, tmpl *x509.RevocationList) []byte {
	t.Helper()
	issuer := *name // x509.CreateRevocationList reads only the subject, key usage and key ID
	issuer.KeyUsage |= x509.KeyUsageCRLSign
	if len(issuer.SubjectKeyId) == 0 {
		issuer.SubjectKeyId = keyID(t, name.RawSubjectPublicKeyInfo)
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, &issuer, key)
	if err != nil {
		t.Fatalf("testca: signing CRL: %v", err)
	}
	return der
}

// keyID is the SHA-1 of the subjectPublicKey BIT STRING of spki (RFC 5280
// 4.2.1.2, method 1), as Go computes subject key IDs.
func keyID(t testing.TB, spki []byte) []byte {
	t.Helper()
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		t.Fatalf("testca: parsing public key: %v", err)
	}
	sum := sha1.Sum(info.PublicKey.Bytes)
	return sum[:]
}

// IssueIntermediate issues another intermediate under the CA's root, with
// the profile of certs.NewIntermediate (subject "certmesh intermediate <td>
// <n>", certSign and cRLSign, path length 0, the CA intermediate's name
// constraints, valid from a minute ago for certs.IntermediateLifetime), after
// the edits: a second intermediate (rotation), or with
// WithTemplate(func(c) { c.KeyUsage = x509.KeyUsageCertSign }) a CA without
// cRLSign. Only WithTemplate and WithValidity apply. It needs the root's
// key (not with FromKeyPairs without one).
func (ca *CA) IssueIntermediate(t testing.TB, opts ...Option) *certs.KeyPair {
	t.Helper()
	if ca.root.Key == nil {
		t.Fatalf("testca: IssueIntermediate needs the root's key")
	}
	o := ca.options(opts, certs.IntermediateLifetime)
	in := ca.inter.Cert
	ca.mu.Lock()
	ca.intermediates++
	n := ca.intermediates
	ca.mu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber:                randomSerial(t),
		Subject:                     pkix.Name{CommonName: fmt.Sprintf("%s %d", in.Subject.CommonName, n+1), Organization: in.Subject.Organization},
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLen:                  0,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         in.PermittedDNSDomains,
		PermittedURIDomains:         in.PermittedURIDomains,
		PermittedIPRanges:           in.PermittedIPRanges,
		PermittedEmailAddresses:     in.PermittedEmailAddresses,
	}
	key := newKey(t)
	o.finish(t, tmpl, key)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root.Cert, key.Public(), ca.root.Key)
	if err != nil {
		t.Fatalf("testca: signing intermediate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return &certs.KeyPair{Cert: cert, Key: key}
}

func randomSerial(t testing.TB) *big.Int {
	t.Helper()
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return s.Add(s, big.NewInt(1))
}
