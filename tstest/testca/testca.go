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
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

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
