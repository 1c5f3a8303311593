package certs

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// The reasons VerifyCRL refuses a CRL for.
const (
	ReasonCRLMalformed    Reason = "crl-malformed"      // not a parseable X.509 v2 CRL of the certmesh profile
	ReasonCRLUntrusted    Reason = "crl-untrusted"      // not signed by an intermediate issued by the pinned root
	ReasonCRLSignedByLeaf Reason = "crl-signed-by-leaf" // signed by a certificate that may not sign CRLs (not a CA, or no cRLSign)
	ReasonCRLRollback     Reason = "crl-rollback"       // a lower number than the CRL already held
	ReasonCRLConflict     Reason = "crl-conflict"       // the number of the CRL already held, with other content
	ReasonCRLNotYetValid  Reason = "crl-not-yet-valid"  // thisUpdate later than now plus CRLClockSkew
)

// Revocation reason codes (RFC 5280 5.3.1 CRLReason), for RevokedCert.Reason.
// 7 is unassigned. NewCRL refuses RevokeRemoveFromCRL, which belongs to
// delta CRLs only, and VerifyCRL refuses a CRL with an entry carrying it.
const (
	RevokeUnspecified          = 0
	RevokeKeyCompromise        = 1
	RevokeCACompromise         = 2
	RevokeAffiliationChanged   = 3
	RevokeSuperseded           = 4
	RevokeCessationOfOperation = 5
	RevokeCertificateHold      = 6
	RevokeRemoveFromCRL        = 8
	RevokePrivilegeWithdrawn   = 9
	RevokeAACompromise         = 10
)

// MaxCRLSize bounds a CRL's DER, in NewCRL and VerifyCRL: about 35,000
// entries of certmesh serials. Base64 in JSON it still fits one coordinator
// event (wire.MaxEventSize, 4 MiB).
const MaxCRLSize = 2 << 20

// CRLClockSkew is how far in the future a CRL's thisUpdate may be before
// VerifyCRL refuses it as not yet valid: the CA's and the agent's clocks
// may disagree this much.
const CRLClockSkew = 5 * time.Minute

// maxCRLSignerChecks bounds the signature checks VerifyCRL makes looking
// for the signer among the intermediates it is given.
const maxCRLSignerChecks = MaxBundleCerts

// RevokedCert is one entry of a CRL.
type RevokedCert struct {
	Serial    *big.Int  // serial number of the revoked certificate
	RevokedAt time.Time // revocation time (whole seconds, UTC, once encoded)
	Reason    int       // RFC 5280 reason code (Revoke*); 0, unspecified, is not encoded
}

// Extension OIDs (RFC 5280 5.2, 5.3) VerifyCRL looks at.
var (
	oidCRLNumber         = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidReasonCode        = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidInvalidityDate    = asn1.ObjectIdentifier{2, 5, 29, 24}
	oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}
	crlEntryExtensionsOK = []asn1.ObjectIdentifier{oidReasonCode, oidInvalidityDate}
	maxCRLNumber         = new(big.Int).Lsh(big.NewInt(1), 159) // exclusive: 20 octets, positive
)

// NewCRL creates a complete X.509 v2 CRL (DER) signed by issuer, the
// intermediate that issues machine and user certificates (a *KeyPair as
// made by NewIntermediate). It lists revoked, in this order, and carries the
// CRL number extension (number), the authority key identifier (issuer's
// subject key ID) and nextUpdate. Times are encoded in whole seconds, UTC.
//
// number must be non-negative, below 2^159 (20 octets), and higher than that
// of any CRL the CA published before, by any of its intermediates: agents
// hold one CRL per trust domain and refuse a lower number (ReasonCRLRollback)
// and the same number with other content (ReasonCRLConflict). nextUpdate
// must be after thisUpdate. Each entry needs a positive serial, unique in
// the list, a revocation time, and a reason code of RFC 5280 other than
// removeFromCRL (8).
//
// NewCRL checks the signature with issuer.Cert, so a key that is not the
// certificate's is an error, as is an issuer without the cRLSign key usage
// and a CRL over MaxCRLSize.
func NewCRL(issuer *KeyPair, number *big.Int, thisUpdate, nextUpdate time.Time, revoked []RevokedCert) ([]byte, error) {
	if issuer == nil || issuer.Cert == nil || issuer.Key == nil {
		return nil, fmt.Errorf("creating CRL: no issuer certificate and key")
	}
	if number == nil || number.Sign() < 0 || number.Cmp(maxCRLNumber) >= 0 {
		return nil, fmt.Errorf("creating CRL: number %v: want an integer from 0 to 2^159-1", number)
	}
	if !nextUpdate.After(thisUpdate) {
		return nil, fmt.Errorf("creating CRL: nextUpdate %s is not after thisUpdate %s", nextUpdate.UTC().Format(time.RFC3339), thisUpdate.UTC().Format(time.RFC3339))
	}
	if !issuer.Cert.IsCA || issuer.Cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, fmt.Errorf("creating CRL: issuer %q is not a CA with the cRLSign key usage", issuer.Cert.Subject)
	}
	seen := make(map[string]bool, len(revoked))
	entries := make([]x509.RevocationListEntry, len(revoked))
	for i, r := range revoked {
		switch {
		case r.Serial == nil || r.Serial.Sign() <= 0:
			return nil, fmt.Errorf("creating CRL: entry %d: serial %v is not a positive integer", i, r.Serial)
		case seen[serialKey(r.Serial)]:
			return nil, fmt.Errorf("creating CRL: entry %d: serial %s is listed twice", i, r.Serial.Text(16))
		case r.RevokedAt.IsZero():
			return nil, fmt.Errorf("creating CRL: entry %d (serial %s): no revocation time", i, r.Serial.Text(16))
		case r.Reason < 0 || r.Reason > RevokeAACompromise || r.Reason == 7 || r.Reason == RevokeRemoveFromCRL:
			return nil, fmt.Errorf("creating CRL: entry %d (serial %s): reason code %d is not a CRLReason of a complete CRL", i, r.Serial.Text(16), r.Reason)
		}
		seen[serialKey(r.Serial)] = true
		entries[i] = x509.RevocationListEntry{SerialNumber: r.Serial, RevocationTime: r.RevokedAt, ReasonCode: r.Reason}
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, issuer.Cert, issuer.Key)
	if err != nil {
		return nil, fmt.Errorf("creating CRL: %w", err)
	}
	if len(der) > MaxCRLSize {
		return nil, fmt.Errorf("creating CRL: %d bytes with %d entries, agents accept at most %d", len(der), len(revoked), MaxCRLSize)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("creating CRL: parsing the result: %w", err)
	}
	if err := rl.CheckSignatureFrom(issuer.Cert); err != nil {
		return nil, fmt.Errorf("creating CRL: the issuer key is not the key of %q: %w", issuer.Cert.Subject, err)
	}
	return der, nil
}

// CRL is a CRL that VerifyCRL accepted. Its fields are read-only.
type CRL struct {
	Raw        []byte            // the DER VerifyCRL was given
	Number     *big.Int          // CRL number: one growing sequence per trust domain
	ThisUpdate time.Time         // when the CA issued it
	NextUpdate time.Time         // when the CA will have issued the next one at the latest
	IssuerSKID []byte            // subject key ID of the intermediate that signed it
	Issuer     *x509.Certificate // that intermediate

	rawTBS  []byte
	revoked []RevokedCert
	index   map[string]int // serialKey → index in revoked
}

// IsRevoked reports whether the CRL lists serial. The CRL covers only the
// certificates its Issuer issued (see Covers): certmesh serials are random,
// but serials are unique per issuer only.
func (c *CRL) IsRevoked(serial *big.Int) bool {
	if c == nil || serial == nil {
		return false
	}
	_, ok := c.index[serialKey(serial)]
	return ok
}

// Entry returns the CRL's entry for serial, if it lists it.
func (c *CRL) Entry(serial *big.Int) (RevokedCert, bool) {
	if c == nil || serial == nil {
		return RevokedCert{}, false
	}
	i, ok := c.index[serialKey(serial)]
	if !ok {
		return RevokedCert{}, false
	}
	return c.revoked[i].clone(), true
}

// Revoked returns a copy of the CRL's entries, in the CRL's order.
func (c *CRL) Revoked() []RevokedCert {
	if c == nil {
		return nil
	}
	out := make([]RevokedCert, len(c.revoked))
	for i, r := range c.revoked {
		out[i] = r.clone()
	}
	return out
}

// Len is the number of entries.
func (c *CRL) Len() int {
	if c == nil {
		return 0
	}
	return len(c.revoked)
}

// Covers reports whether cert was issued by the CRL's issuer (same issuer
// name and, when cert has one, authority key ID), so that the CRL decides
// whether cert is revoked: cert is revoked if Covers(cert) &&
// IsRevoked(cert.SerialNumber).
func (c *CRL) Covers(cert *x509.Certificate) bool {
	if c == nil || c.Issuer == nil || cert == nil {
		return false
	}
	if !bytes.Equal(cert.RawIssuer, c.Issuer.RawSubject) {
		return false
	}
	return len(cert.AuthorityKeyId) == 0 || bytes.Equal(cert.AuthorityKeyId, c.IssuerSKID)
}

// Revokes reports whether c is on this CRL: issued by the CRL's issuer and
// listed by serial. A nil CRL revokes nothing.
func (c *CRL) Revokes(cert *x509.Certificate) bool {
	return c.Covers(cert) && c.IsRevoked(cert.SerialNumber)
}

// CheckMachine returns the rejection (ReasonRevoked) for machine
// certificate cert, verified as id, if this CRL revokes it; nil otherwise.
// Verify calls it; an agent that receives a newer CRL calls it again for
// the peers it holds.
func (c *CRL) CheckMachine(cert *x509.Certificate, id Identity) error {
	if !c.Revokes(cert) {
		return nil
	}
	return reject(ReasonRevoked, "machine certificate %s of device %s is revoked (CRL %s)", id.Serial, id.DeviceID, c.Number)
}

// CheckUser is CheckMachine for a user certificate verified as u
// (ReasonUserRevoked).
func (c *CRL) CheckUser(cert *x509.Certificate, u *UserIdentity) *RejectError {
	if !c.Revokes(cert) {
		return nil
	}
	return userReject(ReasonUserRevoked, "user certificate %s of %s is revoked (CRL %s)", u.Serial, u.Email, c.Number)
}

// Stale reports whether now is more than grace past the CRL's nextUpdate:
// the CA should have published a newer CRL by then, so either the CA is
// down or someone (the coordinator) withholds it. VerifyCRL accepts stale
// CRLs; what to do about one is the agent's setting. No CRL (nil) is stale.
func (c *CRL) Stale(now time.Time, grace time.Duration) bool {
	return c == nil || now.After(c.NextUpdate.Add(grace))
}

func (r RevokedCert) clone() RevokedCert {
	r.Serial = new(big.Int).Set(r.Serial)
	return r
}

// serialKey is the map key of a serial number.
func serialKey(s *big.Int) string {
	if s.Sign() < 0 {
		return "-" + string(s.Bytes())
	}
	return string(s.Bytes())
}

// VerifyCRL decides whether to accept der, a CRL received from the network,
// in place of current, the CRL the agent holds (nil if none). It accepts a
// complete X.509 v2 CRL that:
//
//   - parses (no trailing data), is at most MaxCRLSize, has a CRL number
//     (non-negative, at most 20 octets) and a nextUpdate not before its
//     thisUpdate, has no delta CRL indicator, no critical extension, and no
//     entry with a critical extension or the removeFromCRL reason (RFC 5280
//     5.2, 5.3; otherwise ReasonCRLMalformed);
//   - is signed by one of intermediates that is a CA (basic constraints)
//     with the cRLSign key usage set explicitly, as NewIntermediate makes it
//     (and always has: intermediates of existing state directories
//     qualify; otherwise ReasonCRLSignedByLeaf), whose subject is the CRL's issuer
//     and whose subject key ID its authority key ID (when present), and
//     which is issued directly by a pinned root and valid at now (otherwise
//     ReasonCRLUntrusted: another CA's, the root itself, a CA below the
//     intermediate, a signature no intermediate makes); at most
//     MaxBundleCerts intermediates are tried, those named as the issuer
//     first;
//   - has a thisUpdate at most CRLClockSkew after now (otherwise
//     ReasonCRLNotYetValid);
//   - has a number higher than current's (lower: ReasonCRLRollback). The
//     same number with the same signed content (whatever the signature's
//     bytes) is no change: VerifyCRL returns current itself (at once,
//     without parsing, if der is current.Raw). The same
//     number with other content is ReasonCRLConflict: the CA signed two
//     CRLs under one number, or shows different views.
//
// Numbers are compared whatever intermediate signed either CRL: they form
// one sequence per trust domain (see NewCRL). The rollback and conflict
// reasons are given only for CRLs signed as above; anything else is
// refused for its own reason first. A CRL past its nextUpdate is accepted:
// see CRL.Stale.
//
// Errors are *RejectError with one of the ReasonCRL* reasons (ReasonOf).
func VerifyCRL(der []byte, roots *Roots, intermediates []*x509.Certificate, now time.Time, current *CRL) (*CRL, error) {
	if current != nil && len(der) > 0 && bytes.Equal(der, current.Raw) {
		// The very CRL held, verified before: agents receive it again at
		// every reconnection.
		return current, nil
	}
	rl, err := parseCRL(der)
	if err != nil {
		return nil, err
	}
	if roots == nil {
		return nil, reject(ReasonCRLUntrusted, "no pinned root")
	}
	issuer, err := crlSigner(rl, roots, intermediates, now)
	if err != nil {
		return nil, err
	}
	if rl.ThisUpdate.After(now.Add(CRLClockSkew)) {
		return nil, reject(ReasonCRLNotYetValid, "CRL %s is issued at %s, in the future", rl.Number, rl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if current != nil && current.Number != nil {
		switch rl.Number.Cmp(current.Number) {
		case -1:
			return nil, reject(ReasonCRLRollback, "CRL number %s is lower than the number %s of the CRL held", rl.Number, current.Number)
		case 0:
			if bytes.Equal(rl.RawTBSRevocationList, current.rawTBS) {
				return current, nil
			}
			return nil, reject(ReasonCRLConflict, "CRL number %s has other content than the CRL %s held", rl.Number, current.Number)
		}
	}
	crl := &CRL{
		Raw:        rl.Raw,
		Number:     rl.Number,
		ThisUpdate: rl.ThisUpdate,
		NextUpdate: rl.NextUpdate,
		IssuerSKID: slices.Clone(issuer.SubjectKeyId),
		Issuer:     issuer,
		rawTBS:     rl.RawTBSRevocationList,
		revoked:    make([]RevokedCert, len(rl.RevokedCertificateEntries)),
		index:      make(map[string]int, len(rl.RevokedCertificateEntries)),
	}
	for i, e := range rl.RevokedCertificateEntries {
		crl.revoked[i] = RevokedCert{Serial: e.SerialNumber, RevokedAt: e.RevocationTime, Reason: e.ReasonCode}
		if _, dup := crl.index[serialKey(e.SerialNumber)]; !dup {
			crl.index[serialKey(e.SerialNumber)] = i
		}
	}
	return crl, nil
}

// parseCRL parses der and checks it has the structure VerifyCRL wants.
func parseCRL(der []byte) (*x509.RevocationList, error) {
	if len(der) == 0 {
		return nil, reject(ReasonCRLMalformed, "CRL is empty")
	}
	if len(der) > MaxCRLSize {
		return nil, reject(ReasonCRLMalformed, "CRL is %d bytes, at most %d allowed", len(der), MaxCRLSize)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, &RejectError{Reason: ReasonCRLMalformed, Err: fmt.Errorf("parsing CRL: %w", err)}
	}
	if len(rl.Raw) != len(der) {
		return nil, reject(ReasonCRLMalformed, "CRL has %d bytes of trailing data", len(der)-len(rl.Raw))
	}
	number := false
	for i, e := range rl.Extensions {
		for _, prev := range rl.Extensions[:i] {
			if prev.Id.Equal(e.Id) {
				return nil, reject(ReasonCRLMalformed, "CRL has extension %s twice", e.Id)
			}
		}
		switch {
		case e.Id.Equal(oidCRLNumber):
			number = true
		case e.Id.Equal(oidDeltaCRLIndicator):
			return nil, reject(ReasonCRLMalformed, "CRL is a delta CRL, want a complete CRL")
		case e.Critical:
			return nil, reject(ReasonCRLMalformed, "CRL has unknown critical extension %s", e.Id)
		}
	}
	switch {
	case !number || rl.Number == nil:
		return nil, reject(ReasonCRLMalformed, "CRL has no CRL number")
	case rl.Number.Sign() < 0 || rl.Number.Cmp(maxCRLNumber) >= 0:
		return nil, reject(ReasonCRLMalformed, "CRL number %s is negative or longer than 20 octets", rl.Number)
	case rl.NextUpdate.IsZero():
		return nil, reject(ReasonCRLMalformed, "CRL has no nextUpdate")
	case rl.NextUpdate.Before(rl.ThisUpdate):
		return nil, reject(ReasonCRLMalformed, "CRL nextUpdate %s is before its thisUpdate %s", rl.NextUpdate.UTC().Format(time.RFC3339), rl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	for _, e := range rl.RevokedCertificateEntries {
		if e.ReasonCode == RevokeRemoveFromCRL {
			return nil, reject(ReasonCRLMalformed, "CRL entry %s has reason removeFromCRL, which only a delta CRL may use", e.SerialNumber.Text(16))
		}
		for _, x := range e.Extensions {
			if x.Critical && !slices.ContainsFunc(crlEntryExtensionsOK, x.Id.Equal) {
				return nil, reject(ReasonCRLMalformed, "CRL entry %s has unknown critical extension %s", e.SerialNumber.Text(16), x.Id)
			}
		}
	}
	return rl, nil
}

// crlSigner finds the certificate among intermediates whose key signed rl
// and checks that it may sign the CRLs of the trust domain.
func crlSigner(rl *x509.RevocationList, roots *Roots, intermediates []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	// Those named as the issuer first: the CA's own intermediate is found
	// with one signature check. The others are tried too (within the
	// budget) so that a CRL signed by a leaf is called that, whatever
	// issuer name it claims.
	named := func(c *x509.Certificate) bool { return bytes.Equal(c.RawSubject, rl.RawIssuer) }
	candidates := make([]*x509.Certificate, 0, len(intermediates))
	for _, c := range intermediates {
		if c != nil && named(c) {
			candidates = append(candidates, c)
		}
	}
	anyNamed := len(candidates) > 0
	for _, c := range intermediates {
		if c != nil && !named(c) {
			candidates = append(candidates, c)
		}
	}
	var signer *x509.Certificate
	for i, c := range candidates {
		if i >= maxCRLSignerChecks {
			break
		}
		if c.PublicKeyAlgorithm == x509.UnknownPublicKeyAlgorithm {
			continue
		}
		if c.CheckSignature(rl.SignatureAlgorithm, rl.RawTBSRevocationList, rl.Signature) == nil {
			signer = c
			break
		}
	}
	switch {
	case signer == nil && !anyNamed:
		return nil, reject(ReasonCRLUntrusted, "CRL issuer %q is none of the %d intermediates given", rl.Issuer, len(intermediates))
	case signer == nil:
		return nil, reject(ReasonCRLUntrusted, "CRL signature does not verify with the key of issuer %q", rl.Issuer)
	case !signer.BasicConstraintsValid || !signer.IsCA:
		return nil, reject(ReasonCRLSignedByLeaf, "CRL is signed by %q, which is not a CA", signer.Subject)
	case signer.KeyUsage&x509.KeyUsageCRLSign == 0:
		return nil, reject(ReasonCRLSignedByLeaf, "CRL is signed by CA %q, which lacks the cRLSign key usage", signer.Subject)
	case !named(signer):
		return nil, reject(ReasonCRLUntrusted, "CRL names issuer %q but is signed by %q", rl.Issuer, signer.Subject)
	case len(rl.AuthorityKeyId) > 0 && !bytes.Equal(rl.AuthorityKeyId, signer.SubjectKeyId):
		return nil, reject(ReasonCRLUntrusted, "CRL authority key ID %x is not the subject key ID %x of its signer %q", rl.AuthorityKeyId, signer.SubjectKeyId, signer.Subject)
	}
	for _, r := range roots.certs {
		if r.Equal(signer) {
			return nil, reject(ReasonCRLUntrusted, "CRL is signed by the root %q, not by the issuing intermediate", signer.Subject)
		}
	}
	// No intermediates: the signer must be issued by a pinned root itself,
	// as the intermediate that issues machine certificates is; a CA below
	// it (which its zero path length forbids anyway) may not sign CRLs.
	if _, err := signer.Verify(x509.VerifyOptions{
		Roots:       roots.pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, &RejectError{Reason: ReasonCRLUntrusted, Err: fmt.Errorf("CRL signer %q is not an intermediate of the pinned root: %w", signer.Subject, err)}
	}
	return signer, nil
}
