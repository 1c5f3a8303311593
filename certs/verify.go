package certs

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"time"
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
)

// RejectError is the typed error Verify returns.
type RejectError struct {
	Reason Reason
	Err    error
}

func (e *RejectError) Error() string { return fmt.Sprintf("rejected (%s): %v", e.Reason, e.Err) }
func (e *RejectError) Unwrap() error { return e.Err }

// ReasonOf extracts the rejection reason from an error ("" if none).
func ReasonOf(err error) Reason {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

func reject(r Reason, format string, args ...any) error {
	return &RejectError{Reason: r, Err: fmt.Errorf(format, args...)}
}

// Verify decides whether a peer's bundle is trustworthy at time now: the
// machine certificate must chain to one of roots through the bundle's
// intermediates (name constraints enforced), be valid now, be a client-auth
// leaf, and carry a complete certmesh machine profile inside roots'
// trust domain. On success it returns the identity the certificate proves.
func Verify(b Bundle, roots *Roots, now time.Time) (Identity, error) {
	m := b.Machine
	if m == nil {
		return Identity{}, reject(ReasonMalformed, "bundle has no machine certificate")
	}
	if roots == nil {
		return Identity{}, reject(ReasonUntrusted, "no pinned root")
	}
	if m.IsCA {
		return Identity{}, reject(ReasonKeyUsage, "machine certificate is a CA certificate")
	}
	// CheckSignature, not CheckSignatureFrom: the latter refuses a non-CA
	// parent, so it never recognises a self-signed leaf.
	if bytes.Equal(m.RawIssuer, m.RawSubject) && m.CheckSignature(m.SignatureAlgorithm, m.RawTBSCertificate, m.Signature) == nil {
		return Identity{}, reject(ReasonSelfSigned, "machine certificate %q signs itself", m.Subject)
	}
	if now.Before(m.NotBefore) {
		return Identity{}, reject(ReasonNotYetValid, "machine certificate is valid from %s", m.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(m.NotAfter) {
		return Identity{}, reject(ReasonExpired, "machine certificate expired at %s", m.NotAfter.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, c := range b.Intermediates {
		inter.AddCert(c)
	}
	_, err := m.Verify(x509.VerifyOptions{
		Roots:         roots.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return Identity{}, classifyChainError(err, m, b.Intermediates, roots.certs, now)
	}
	return machineIdentity(m, roots.TrustDomain)
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
// machine certificate.
func machineIdentity(m *x509.Certificate, td TrustDomain) (Identity, error) {
	id := Identity{
		TrustDomain: td,
		Serial:      m.SerialNumber.Text(16),
		NotBefore:   m.NotBefore,
		NotAfter:    m.NotAfter,
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
	if id.Attestation, err = parseAttestationExt(m); err != nil {
		return Identity{}, &RejectError{Reason: ReasonProfile, Err: err}
	}
	if id.Tags, err = parseTagsExt(m); err != nil {
		return Identity{}, &RejectError{Reason: ReasonProfile, Err: err}
	}
	return id, nil
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) <= len(suffix) || s[len(s)-len(suffix):] != suffix {
		return "", false
	}
	return s[:len(s)-len(suffix)], true
}
