package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/certmesh/certmesh/internal/reason"
)

// Reason is why a bundle was rejected. Agents log it and show it in status.
type Reason string

// The reasons Verify rejects a bundle for.
const (
	ReasonMalformed        Reason = "malformed"          // not parseable X.509 / bundle
	ReasonSelfSigned       Reason = "self-signed"        // a leaf that signs itself
	ReasonUntrusted        Reason = "untrusted-chain"    // does not chain to the pinned root
	ReasonNameConstraints  Reason = "name-constraints"   // outside the issuing CA's constraints
	ReasonExpired          Reason = "expired"            // after NotAfter (leaf or chain)
	ReasonNotYetValid      Reason = "not-yet-valid"      // before NotBefore
	ReasonWrongTrustDomain Reason = "wrong-trust-domain" // SPIFFE ID outside our trust domain
	ReasonProfile          Reason = "profile"            // missing or malformed certmesh field
	ReasonKeyUsage         Reason = "key-usage"          // not a client-auth leaf
	ReasonRevoked          Reason = "revoked"            // on the CRL passed to Verify
)

// RejectError is the typed error Verify returns: its Reason, and Err, what
// exactly was wrong ("rejected (reason): err").
type RejectError = reason.Error[Reason, rejectMessage]

type rejectMessage struct{}

func (rejectMessage) Format(r string, err error) string {
	return fmt.Sprintf("rejected (%s): %v", r, err)
}

// ReasonOf extracts the rejection reason from an error ("" if none).
func ReasonOf(err error) Reason { return reason.Of[Reason, rejectMessage](err) }

func reject(r Reason, format string, args ...any) error {
	return reason.New[Reason, rejectMessage](r, format, args...)
}

// The reasons Verify refuses a bundle's user certificate for. They are
// never Verify's error: they appear in Identity.UserRejected, next to the
// machine identity, which stands (see Verify).
const (
	ReasonUserUntrusted        Reason = "user-untrusted-chain"    // user certificate does not chain to the pinned root (another CA, self-signed)
	ReasonUserNameConstraints  Reason = "user-name-constraints"   // user certificate outside the issuing CA's constraints
	ReasonUserExpired          Reason = "user-expired"            // after the user certificate's (or its chain's) NotAfter
	ReasonUserNotYetValid      Reason = "user-not-yet-valid"      // before its NotBefore
	ReasonUserKeyUsage         Reason = "user-key-usage"          // not a client-auth leaf
	ReasonUserWrongTrustDomain Reason = "user-wrong-trust-domain" // user SPIFFE ID outside our trust domain
	ReasonUserProfile          Reason = "user-profile"            // missing or malformed certmesh user field
	ReasonUserDeviceMismatch   Reason = "user-device-mismatch"    // bound to another device than the machine certificate's
	ReasonUserKeyMismatch      Reason = "user-key-mismatch"       // subject key is not the machine certificate's
	ReasonUserRevoked          Reason = "user-revoked"            // on the CRL passed to Verify
)

// userReasons maps the reason a leaf check gives to its user-certificate
// counterpart.
var userReasons = map[Reason]Reason{
	ReasonMalformed:        ReasonUserProfile,
	ReasonSelfSigned:       ReasonUserUntrusted,
	ReasonUntrusted:        ReasonUserUntrusted,
	ReasonNameConstraints:  ReasonUserNameConstraints,
	ReasonExpired:          ReasonUserExpired,
	ReasonNotYetValid:      ReasonUserNotYetValid,
	ReasonWrongTrustDomain: ReasonUserWrongTrustDomain,
	ReasonProfile:          ReasonUserProfile,
	ReasonKeyUsage:         ReasonUserKeyUsage,
}

// Verify decides whether a peer's bundle is trustworthy at time now: the
// machine certificate must chain to one of roots through the bundle's
// intermediates (name constraints enforced), be valid now, be a client-auth
// leaf, carry a complete certmesh machine profile inside roots' trust
// domain, and not be revoked by crl. On success it returns the identity the
// certificate proves.
//
// crl is a CRL the caller already verified with [VerifyCRL] (the newest it
// holds), or nil to check no revocation. It revokes only certificates of
// the issuer that signed it.
//
// If the bundle carries a user certificate, Verify accepts it, and sets
// Identity.User, only if it too chains to roots through the bundle's
// intermediates (name constraints enforced), is valid now, is a client-auth
// leaf that is not a CA, has the machine certificate's subject key, is bound
// by its device binding extension to the machine certificate's device ID,
// and carries exactly one user SPIFFE ID in roots' trust domain, exactly one
// email address, no DNS or IP SAN, no machine extension, and well-formed
// groups, and is not revoked by crl.
//
// A user certificate that fails any of this never makes Verify fail: the
// machine identity is returned with User nil and Identity.UserRejected
// saying why (a user-* Reason). That holds for an expired user certificate
// (the user must log in again; the peer stays in the mesh) and equally for
// a forged one (another CA's, another device's, another key's): the user
// certificate is optional, so whoever relays a bundle can always strip it,
// and a forged one must buy no more than stripping does, the peer without
// its user. The reason is recorded so that agents can log and show it.
//
// Verify tolerates no clock skew: it is VerifyWith with NotBeforeSkew 0.
func Verify(b Bundle, roots *Roots, crl *CRL, now time.Time) (Identity, error) {
	return VerifyWith(b, roots, crl, VerifyOptions{Now: now})
}

// VerifyWith is Verify at opts.Now, tolerating a verifier's clock that is
// behind the issuer's by up to opts.NotBeforeSkew (see [VerifyOptions]).
// It fails, with an error that is not a *RejectError, if opts is invalid.
func VerifyWith(b Bundle, roots *Roots, crl *CRL, opts VerifyOptions) (Identity, error) {
	if err := opts.check(); err != nil {
		return Identity{}, err
	}
	m := b.Machine
	if m == nil {
		return Identity{}, reject(ReasonMalformed, "bundle has no machine certificate")
	}
	if roots == nil {
		return Identity{}, reject(ReasonUntrusted, "no pinned root")
	}
	inter := x509.NewCertPool()
	for _, c := range b.Intermediates {
		inter.AddCert(c)
	}
	chains, err := verifyLeaf("machine certificate", m, inter, b.Intermediates, roots, opts)
	if err != nil {
		return Identity{}, err
	}
	id, err := machineIdentity(m, roots.TrustDomain, chains)
	if err != nil {
		return id, err
	}
	if err := crl.CheckMachine(m, id); err != nil {
		return Identity{}, err
	}
	if b.User == nil {
		return id, nil
	}
	user, uerr := verifyUser(b.User, m, id.DeviceID, inter, b.Intermediates, roots, opts)
	if uerr == nil {
		uerr = crl.CheckUser(b.User, user)
	}
	if uerr != nil {
		id.UserRejected = uerr
	} else {
		id.User = user
	}
	return id, nil
}

// verifyLeaf checks that c is a leaf, valid at opts.checkTime, chaining
// to roots through inter with client-auth usage and the chain's name
// constraints.
func verifyLeaf(what string, c *x509.Certificate, inter *x509.CertPool, inters []*x509.Certificate, roots *Roots, opts VerifyOptions) ([][]*x509.Certificate, error) {
	if c.IsCA {
		return nil, reject(ReasonKeyUsage, "%s is a CA certificate", what)
	}
	// CheckSignature, not CheckSignatureFrom: the latter refuses a non-CA
	// parent, so it never recognises a self-signed leaf.
	if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil {
		return nil, reject(ReasonSelfSigned, "%s %q signs itself", what, c.Subject)
	}
	now := opts.checkTime(c, inters, roots.certs)
	if now.Before(c.NotBefore) {
		return nil, reject(ReasonNotYetValid, "%s is valid from %s, %s after this machine's clock%s", what,
			c.NotBefore.UTC().Format(time.RFC3339), c.NotBefore.Sub(opts.Now).Round(time.Second), opts.tolerated())
	}
	if now.After(c.NotAfter) {
		return nil, reject(ReasonExpired, "%s expired at %s", what, c.NotAfter.UTC().Format(time.RFC3339))
	}
	chains, err := c.Verify(x509.VerifyOptions{
		Roots:         roots.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, classifyChainError(err, c, inters, roots.certs, now)
	}
	return chains, nil
}

// verifyUser checks the bundle's user certificate u against the machine
// certificate m, which Verify accepted as device dev. The order decides the
// reason when several apply: leaf and chain first (a forgery by another CA
// is untrusted, whatever it says), then the device binding (another
// device's certificate is a device mismatch, though its key differs too),
// then the subject key, then the rest of the profile.
func verifyUser(u, m *x509.Certificate, dev DeviceID, inter *x509.CertPool, inters []*x509.Certificate, roots *Roots, opts VerifyOptions) (*UserIdentity, *RejectError) {
	if _, err := verifyLeaf("user certificate", u, inter, inters, roots, opts); err != nil {
		var re *RejectError
		if !errors.As(err, &re) {
			return nil, &RejectError{Reason: ReasonUserUntrusted, Err: err}
		}
		r, ok := userReasons[re.Reason]
		if !ok {
			r = ReasonUserUntrusted
		}
		return nil, &RejectError{Reason: r, Err: re.Err}
	}
	td := roots.TrustDomain
	bound, err := parseDeviceBindingExt(u)
	if err != nil {
		return nil, &RejectError{Reason: ReasonUserProfile, Err: err}
	}
	if bound != dev {
		return nil, userReject(ReasonUserDeviceMismatch, "user certificate is bound to device %s, the machine certificate is device %s", bound, dev)
	}
	if !bytes.Equal(u.RawSubjectPublicKeyInfo, m.RawSubjectPublicKeyInfo) {
		return nil, userReject(ReasonUserKeyMismatch, "user certificate's subject key is not the device key of device %s", dev)
	}
	user := &UserIdentity{Serial: u.SerialNumber.Text(16), NotBefore: u.NotBefore, NotAfter: u.NotAfter}
	if len(u.URIs) != 1 {
		return nil, userReject(ReasonUserProfile, "user certificate has %d URI SANs, want exactly one SPIFFE ID", len(u.URIs))
	}
	if u.URIs[0].Scheme != "spiffe" || u.URIs[0].Host != string(td) {
		return nil, userReject(ReasonUserWrongTrustDomain, "user SPIFFE ID %q is not in trust domain %q", u.URIs[0], td)
	}
	if user.UserID, err = parseUserURI(u.URIs[0], td); err != nil {
		return nil, &RejectError{Reason: ReasonUserProfile, Err: err}
	}
	if len(u.EmailAddresses) != 1 {
		return nil, userReject(ReasonUserProfile, "user certificate has %d email SANs, want exactly one", len(u.EmailAddresses))
	}
	if user.Email, err = ParseEmail(u.EmailAddresses[0]); err != nil {
		return nil, &RejectError{Reason: ReasonUserProfile, Err: err}
	}
	if string(user.Email) != u.EmailAddresses[0] {
		return nil, userReject(ReasonUserProfile, "user certificate email %q is not in canonical form", u.EmailAddresses[0])
	}
	if len(u.DNSNames) != 0 || len(u.IPAddresses) != 0 {
		return nil, userReject(ReasonUserProfile, "user certificate has DNS or IP SANs")
	}
	for _, oid := range []asn1.ObjectIdentifier{OIDWireGuardKey, OIDAttestation, OIDTags, OIDRoutes, OIDServices} {
		for _, e := range u.Extensions {
			if e.Id.Equal(oid) {
				return nil, userReject(ReasonUserProfile, "user certificate carries machine extension %s", oid)
			}
		}
	}
	if user.Groups, err = parseGroupsExt(u); err != nil {
		return nil, &RejectError{Reason: ReasonUserProfile, Err: err}
	}
	return user, nil
}

func userReject(r Reason, format string, args ...any) *RejectError {
	return &RejectError{Reason: r, Err: fmt.Errorf(format, args...)}
}

// staleIssuer explains a failed chain on which a CA certificate is outside
// its validity period. It looks for a path of valid signatures from m
// through the bundle's intermediates to a pinned root and returns the
// expired (or not yet valid) rejection for the lowest certificate on it
// that is not valid at now; nil if there is no such path. The number of
// signature checks is bounded, since the intermediates come from the peer.
func staleIssuer(m *x509.Certificate, inters, roots []*x509.Certificate, now time.Time) error {
	budget := 32 // x509 allows itself 100 per Verify
	signedBy := func(c, p *x509.Certificate) bool {
		if budget <= 0 || !bytes.Equal(c.RawIssuer, p.RawSubject) {
			return false
		}
		budget--
		return c.CheckSignatureFrom(p) == nil
	}
	valid := func(c *x509.Certificate) bool { return !now.Before(c.NotBefore) && !now.After(c.NotAfter) }
	// walk reports whether c chains to a root, and the lowest certificate
	// above c on that chain that is not valid now.
	var walk func(c *x509.Certificate, depth int) (*x509.Certificate, bool)
	walk = func(c *x509.Certificate, depth int) (*x509.Certificate, bool) {
		chains := false
		for _, r := range roots {
			if signedBy(c, r) {
				if !valid(r) {
					return r, true
				}
				chains = true
			}
		}
		if depth >= MaxBundleCerts {
			return nil, chains
		}
		for _, p := range inters {
			if p == c || !signedBy(c, p) {
				continue
			}
			above, ok := walk(p, depth+1)
			switch {
			case !ok:
				continue
			case !valid(p):
				return p, true
			case above != nil:
				return above, true
			}
			chains = true
		}
		return nil, chains
	}
	stale, _ := walk(m, 0)
	switch {
	case stale == nil:
		return nil
	case now.Before(stale.NotBefore):
		return reject(ReasonNotYetValid, "chain: CA certificate %q is valid from %s", stale.Subject, stale.NotBefore.UTC().Format(time.RFC3339))
	default:
		return reject(ReasonExpired, "chain: CA certificate %q expired at %s", stale.Subject, stale.NotAfter.UTC().Format(time.RFC3339))
	}
}

func classifyChainError(err error, m *x509.Certificate, inters, roots []*x509.Certificate, now time.Time) error {
	var inv x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &inv) && inv.Reason == x509.Expired || errors.As(err, &unknown) {
		// x509 reports a CA certificate outside its validity period as
		// Expired (also when it is not yet valid, and also when that CA
		// does not lead to our roots anyway) or, depending on the order it
		// tried candidates in, as an unknown authority. Decide ourselves.
		if stale := staleIssuer(m, inters, roots, now); stale != nil {
			return stale
		}
		return &RejectError{Reason: ReasonUntrusted, Err: fmt.Errorf("chain: %w", err)}
	}
	if errors.As(err, &inv) {
		switch inv.Reason {
		case x509.CANotAuthorizedForThisName, x509.TooManyConstraints:
			return &RejectError{Reason: ReasonNameConstraints, Err: fmt.Errorf("chain: %w", err)}
		case x509.IncompatibleUsage:
			return &RejectError{Reason: ReasonKeyUsage, Err: fmt.Errorf("chain: %w", err)}
		}
	}
	return &RejectError{Reason: ReasonUntrusted, Err: fmt.Errorf("chain: %w", err)}
}

// machineIdentity reads the certmesh profile out of a chain-verified
// machine certificate; chains are its verified chains (for the overlay
// ranges its routes must stay out of).
func machineIdentity(m *x509.Certificate, td TrustDomain, chains [][]*x509.Certificate) (Identity, error) {
	id := Identity{
		TrustDomain: td,
		Serial:      m.SerialNumber.Text(16),
		NotBefore:   m.NotBefore,
		NotAfter:    m.NotAfter,
		DeviceKey:   m.PublicKey,
	}
	if len(m.URIs) != 1 {
		return Identity{}, reject(ReasonProfile, "machine certificate has %d URI SANs, want exactly one SPIFFE ID", len(m.URIs))
	}
	if m.URIs[0].Scheme != "spiffe" || m.URIs[0].Host != string(td) {
		return Identity{}, reject(ReasonWrongTrustDomain, "SPIFFE ID %q is not in trust domain %q", m.URIs[0], td)
	}
	devID, err := parseDeviceURI(m.URIs[0], td)
	if err != nil {
		return Identity{}, &RejectError{Reason: ReasonProfile, Err: err}
	}
	id.DeviceID = devID
	if len(m.DNSNames) != 1 {
		return Identity{}, reject(ReasonProfile, "machine certificate has %d DNS SANs, want exactly one", len(m.DNSNames))
	}
	host, ok := cutSuffix(m.DNSNames[0], "."+string(td))
	if !ok {
		return Identity{}, reject(ReasonWrongTrustDomain, "DNS SAN %q is not under %q", m.DNSNames[0], td)
	}
	if id.Hostname, err = ParseHostname(host); err != nil {
		return Identity{}, &RejectError{Reason: ReasonProfile, Err: err}
	}
	if len(m.IPAddresses) == 0 {
		return Identity{}, reject(ReasonProfile, "machine certificate has no overlay address")
	}
	for _, ip := range m.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return Identity{}, reject(ReasonProfile, "machine certificate has an invalid IP SAN")
		}
		id.Addresses = append(id.Addresses, a.Unmap())
	}
	if id.WireGuardKey, err = parseWireGuardExt(m); err != nil {
		return Identity{}, &RejectError{Reason: ReasonProfile, Err: err}
	}
	if id.Attestation, id.EK, err = parseAttestationExt(m); err != nil {
		return Identity{}, &RejectError{Reason: ReasonProfile, Err: err}
	}
	if id.Tags, err = parseTagsExt(m); err != nil {
		return Identity{}, &RejectError{Reason: ReasonProfile, Err: err}
	}
	if id.Routes, err = parseRoutesExt(m, chainOverlays(chains, id.Addresses)); err != nil {
		return Identity{}, &RejectError{Reason: ReasonRoutes, Err: err}
	}
	if id.Services, err = parseServicesExt(m); err != nil {
		return Identity{}, &RejectError{Reason: ReasonServices, Err: err}
	}
	return id, nil
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) <= len(suffix) || s[len(s)-len(suffix):] != suffix {
		return "", false
	}
	return s[:len(s)-len(suffix)], true
}
