package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/reason"
)

// EKUPolicySigning is the extended key usage of the policy-signing
// certificate: certs.Arc + .10 (2.25.1422168524.10). certs.Arc .1 to .6 are
// certificate extensions (certs/oid.go); .10 is reserved here for this
// purpose. Verify accepts a policy only from a root-signed, non-CA
// certificate carrying it.
var EKUPolicySigning = func() asn1.ObjectIdentifier {
	oid := slices.Clone(certs.Arc)
	return append(oid, 10)
}()

// PolicySignerLifetime is the validity of a policy-signing certificate
// NewPolicySigningCertificate creates. The CA must re-sign the current
// policy with a new signing certificate before this one expires: Verify
// refuses a document whose signing certificate is not valid now.
const PolicySignerLifetime = 5 * 365 * 24 * time.Hour

// MaxClockSkew is how far in the future a document's SignedAt may be.
const MaxClockSkew = 5 * time.Minute

// MaxChain bounds the certificates of a SignedPolicy.
const MaxChain = 4

// MaxDocumentSize bounds a SignedPolicy on the wire (JSON).
const MaxDocumentSize = 2*MaxSize + MaxChain*2*certs.MaxCertSize + 4096

// PolicySignerURI is the URI SAN of a trust domain's policy-signing
// certificate, spiffe://<td>/policy.
func PolicySignerURI(td certs.TrustDomain) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: string(td), Path: "/policy"}
}

// NewPolicySigningCertificate creates the policy-signing certificate of a
// trust domain: a fresh P-256 key, signed by the root (root.Key is
// required), not a CA, key usage digitalSignature only, extended key usage
// EKUPolicySigning only, URI SAN PolicySignerURI(td), valid from
// certs.LongLivedBackdate before now to PolicySignerLifetime after. The CA creates it at init, next to
// the intermediate, and keeps its key like the root's.
func NewPolicySigningCertificate(root *certs.KeyPair, td certs.TrustDomain, now time.Time) (*certs.KeyPair, error) {
	if root == nil || root.Cert == nil || root.Key == nil {
		return nil, errors.New("policy signer: the root certificate and its key are required")
	}
	if _, err := certs.ParseTrustDomain(string(td)); err != nil {
		return nil, err
	}
	key, err := certs.NewKey()
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("policy signer: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: "certmesh policy signer " + string(td), Organization: []string{"certmesh"}},
		NotBefore:             now.Add(-certs.LongLivedBackdate), // agents' clocks may be behind
		NotAfter:              now.Add(PolicySignerLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{EKUPolicySigning},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{PolicySignerURI(td)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Cert, key.Public(), root.Key)
	if err != nil {
		return nil, fmt.Errorf("policy signer: signing: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("policy signer: %w", err)
	}
	return &certs.KeyPair{Cert: cert, Key: key}, nil
}

// SignedPolicy is a policy as the CA publishes it and the coordinator
// carries it: JSON on the wire (byte fields in base64).
type SignedPolicy struct {
	// Version increases with every publication; agents refuse one that is
	// not greater than the version they hold.
	Version uint64 `json:"version"`
	// Policy is the exact HuJSON source.
	Policy []byte `json:"policy"`
	// SignedAt is when the CA signed, to the second, in UTC.
	SignedAt time.Time `json:"signed_at"`
	// ValidUntil is when the document stops being current, to the second,
	// in UTC: the CA signs the current version again (same version and
	// policy, new SignedAt and ValidUntil) well before then, and agents
	// refuse a document past it (ReasonPastValidUntil). Documents of the
	// first format (signature context v1) had none; Verify refuses those.
	ValidUntil time.Time `json:"valid_until,omitzero"`
	// Chain is the DER of the policy-signing certificate, followed by any
	// intermediates. (Verify requires the signing certificate to be issued
	// by a pinned root, so in practice the chain is that certificate alone.)
	Chain [][]byte `json:"chain"`
	// Signature is by the signing certificate's key over SignedMessage.
	Signature []byte `json:"signature"`
}

// signatureContext separates policy signatures from anything else the key
// could be made to sign, and names the format of the signed message. The
// first format ("certmesh policy signature v1") had no ValidUntil; a
// signature over it never verifies as one over this one.
const signatureContext = "certmesh policy signature v2\x00"

// SignedMessage is what the signature covers (format v2): the context
// string "certmesh policy signature v2" and a zero byte, then the version
// (8 bytes big-endian), SignedAt and ValidUntil in Unix seconds (8 bytes
// big-endian each, two's complement), and the SHA-256 of the policy bytes.
// The message is hashed with SHA-256 and signed (ECDSA, RSA PKCS #1 v1.5),
// or signed as is (Ed25519).
func (d *SignedPolicy) SignedMessage() []byte {
	sum := sha256.Sum256(d.Policy)
	msg := make([]byte, 0, len(signatureContext)+8+8+8+len(sum))
	msg = append(msg, signatureContext...)
	msg = binary.BigEndian.AppendUint64(msg, d.Version)
	msg = binary.BigEndian.AppendUint64(msg, uint64(d.SignedAt.Unix()))
	msg = binary.BigEndian.AppendUint64(msg, uint64(d.ValidUntil.Unix()))
	return append(msg, sum[:]...)
}

// Marshal is the document's wire form.
func (d *SignedPolicy) Marshal() ([]byte, error) { return json.Marshal(d) }

// Signer parses the signing certificate (the first of the chain). It does
// not verify it: use it to show the signer of a policy Verify accepted.
func (d *SignedPolicy) Signer() (*x509.Certificate, error) {
	if len(d.Chain) == 0 {
		return nil, errors.New("signed policy has no certificate")
	}
	return x509.ParseCertificate(d.Chain[0])
}

// Reason is why Verify refused a signed policy.
type Reason string

// The reasons Verify and ParseSignedPolicy refuse a document for.
const (
	// ReasonMalformed: not a well-formed document, or a field missing or
	// out of bounds, or a certificate that does not parse.
	ReasonMalformed Reason = "malformed"
	// ReasonTruncated: the document ends early.
	ReasonTruncated Reason = "truncated"
	// ReasonUntrusted: the signing certificate is not issued by a pinned
	// root itself (another CA, self-signed, or issued by an intermediate).
	ReasonUntrusted Reason = "untrusted-chain"
	// ReasonWrongEKU: the signing certificate is not a policy-signing
	// certificate: a CA (the intermediate that issues leaves, the root), a
	// leaf without EKUPolicySigning (a machine or user certificate), one
	// with another usage too, or one for another trust domain's SPIFFE ID.
	ReasonWrongEKU Reason = "not-policy-signer"
	// ReasonExpired: the signing certificate is not valid now, or was not
	// at SignedAt.
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid: the signing certificate is not valid yet, or
	// SignedAt is in the future.
	ReasonNotYetValid Reason = "not-yet-valid"
	// ReasonBadSignature: the signature does not match the document (an
	// edited policy, version or time) and the signing certificate's key.
	ReasonBadSignature Reason = "bad-signature"
	// ReasonRollback: the version is not greater than the one held.
	ReasonRollback Reason = "rollback"
	// ReasonPastValidUntil: the document is past its ValidUntil (an old
	// signing the CA has replaced), or has none (the first format).
	ReasonPastValidUntil Reason = "past-valid-until"
	// ReasonInvalidPolicy: the signature is good but the policy does not
	// parse; the CA never signs such a policy.
	ReasonInvalidPolicy Reason = "invalid-policy"
)

// VerifyError is the typed error of Verify and ParseSignedPolicy: its
// Reason, and Err, what exactly was wrong ("policy refused (reason): err").
type VerifyError = reason.Error[Reason, verifyMessage]

type verifyMessage struct{}

func (verifyMessage) Format(r string, err error) string {
	return fmt.Sprintf("policy refused (%s): %v", r, err)
}

// ReasonOf extracts the reason from an error of Verify ("" if none).
func ReasonOf(err error) Reason { return reason.Of[Reason, verifyMessage](err) }

func refuse(r Reason, format string, args ...any) error {
	return reason.New[Reason, verifyMessage](r, format, args...)
}

// ParseSignedPolicy decodes a document's wire form. It checks the form
// only; Verify checks the rest.
func ParseSignedPolicy(data []byte) (*SignedPolicy, error) {
	if len(data) > MaxDocumentSize {
		return nil, refuse(ReasonMalformed, "document is %d bytes, at most %d allowed", len(data), MaxDocumentSize)
	}
	var d SignedPolicy
	if err := json.Unmarshal(data, &d); err != nil {
		var se *json.SyntaxError
		if errors.Is(err, io.ErrUnexpectedEOF) || (errors.As(err, &se) && se.Offset >= int64(len(bytes.TrimRight(data, " \t\r\n")))) ||
			strings.Contains(err.Error(), "unexpected end of JSON input") {
			return nil, refuse(ReasonTruncated, "document ends early (%d bytes): %v", len(data), err)
		}
		return nil, refuse(ReasonMalformed, "%v", err)
	}
	if err := d.checkForm(); err != nil {
		return nil, err
	}
	return &d, nil
}

// checkForm checks the fields' presence and bounds.
func (d *SignedPolicy) checkForm() error {
	switch {
	case d.Version == 0:
		return refuse(ReasonMalformed, "no version (versions start at 1)")
	case len(d.Policy) == 0:
		return refuse(ReasonMalformed, "no policy")
	case len(d.Policy) > MaxSize:
		return refuse(ReasonMalformed, "policy is %d bytes, at most %d allowed", len(d.Policy), MaxSize)
	case d.SignedAt.IsZero():
		return refuse(ReasonMalformed, "no signing time")
	case d.SignedAt.Nanosecond() != 0:
		return refuse(ReasonMalformed, "signing time %s is not a whole second", d.SignedAt.Format(time.RFC3339Nano))
	case d.ValidUntil.Nanosecond() != 0:
		return refuse(ReasonMalformed, "valid-until %s is not a whole second", d.ValidUntil.Format(time.RFC3339Nano))
	case !d.ValidUntil.IsZero() && !d.ValidUntil.After(d.SignedAt):
		return refuse(ReasonMalformed, "valid-until %s is not after the signing time %s", d.ValidUntil.Format(time.RFC3339), d.SignedAt.Format(time.RFC3339))
	case len(d.Chain) == 0:
		return refuse(ReasonMalformed, "no signing certificate")
	case len(d.Chain) > MaxChain:
		return refuse(ReasonMalformed, "%d certificates, at most %d allowed", len(d.Chain), MaxChain)
	case len(d.Signature) == 0:
		return refuse(ReasonMalformed, "no signature")
	case len(d.Signature) > 1024:
		return refuse(ReasonMalformed, "signature of %d bytes", len(d.Signature))
	}
	for i, der := range d.Chain {
		if len(der) > certs.MaxCertSize {
			return refuse(ReasonMalformed, "certificate %d is %d bytes, at most %d allowed", i, len(der), certs.MaxCertSize)
		}
	}
	return nil
}

// Sign signs policy source src as version, at now (truncated to the
// second), valid for DefaultValidity, with signer, the key of chain[0], a
// policy-signing certificate (NewPolicySigningCertificate); chain may go
// on with intermediates. It refuses a source that does not parse and a
// policy whose own tests fail.
func Sign(version uint64, src []byte, signer crypto.Signer, chain []*x509.Certificate, now time.Time) (*SignedPolicy, error) {
	return SignValidFor(version, src, signer, chain, now, DefaultValidity)
}

// SignValidFor is Sign with ValidUntil validity after now (at least a
// second, whole seconds).
func SignValidFor(version uint64, src []byte, signer crypto.Signer, chain []*x509.Certificate, now time.Time, validity time.Duration) (*SignedPolicy, error) {
	if version == 0 {
		return nil, errors.New("sign policy: versions start at 1")
	}
	if validity < time.Second {
		return nil, fmt.Errorf("sign policy: validity %s, want at least a second", validity)
	}
	pol, err := Parse(src)
	if err != nil {
		return nil, fmt.Errorf("sign policy: %w", err)
	}
	if failed := Failed(RunTests(pol)); len(failed) > 0 {
		lines := make([]string, len(failed))
		for i, r := range failed {
			lines[i] = r.String()
		}
		return nil, fmt.Errorf("sign policy: %d of the policy's tests fail:\n%s", len(failed), strings.Join(lines, "\n"))
	}
	if len(chain) == 0 || chain[0] == nil || signer == nil {
		return nil, errors.New("sign policy: a signer and its certificate are required")
	}
	leaf := chain[0]
	if err := checkSignerProfile(leaf); err != nil {
		return nil, fmt.Errorf("sign policy: %w", err)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, errors.New("sign policy: the key is not the signing certificate's")
	}
	signedAt := now.UTC().Truncate(time.Second)
	d := &SignedPolicy{
		Version:    version,
		Policy:     slices.Clone(src),
		SignedAt:   signedAt,
		ValidUntil: signedAt.Add(validity.Truncate(time.Second)),
	}
	for _, c := range chain {
		d.Chain = append(d.Chain, slices.Clone(c.Raw))
	}
	msg := d.SignedMessage()
	if _, isEd := signer.Public().(ed25519.PublicKey); isEd {
		d.Signature, err = signer.Sign(rand.Reader, msg, crypto.Hash(0))
	} else {
		sum := sha256.Sum256(msg)
		d.Signature, err = signer.Sign(rand.Reader, sum[:], crypto.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("sign policy: %w", err)
	}
	if err := d.checkForm(); err != nil {
		return nil, fmt.Errorf("sign policy: %w", err)
	}
	return d, nil
}

// checkSignerProfile checks that c is a policy-signing certificate: not a
// CA, with EKUPolicySigning as its only extended key usage, digital
// signatures allowed, and one URI SAN, a policy signer's.
func checkSignerProfile(c *x509.Certificate) error {
	switch {
	case c.IsCA:
		return refuse(ReasonWrongEKU, "signing certificate %q is a CA certificate, not a policy signer", c.Subject)
	case !slices.ContainsFunc(c.UnknownExtKeyUsage, EKUPolicySigning.Equal):
		return refuse(ReasonWrongEKU, "signing certificate %q lacks the policy-signing extended key usage %s", c.Subject, EKUPolicySigning)
	case len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) != 1:
		return refuse(ReasonWrongEKU, "signing certificate %q has extended key usages besides policy signing", c.Subject)
	case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return refuse(ReasonWrongEKU, "signing certificate %q may not make digital signatures", c.Subject)
	case len(c.URIs) != 1 || c.URIs[0].Scheme != "spiffe" || c.URIs[0].Path != "/policy":
		return refuse(ReasonWrongEKU, "signing certificate %q is not a policy signer's (want URI SAN spiffe://<trust domain>/policy)", c.Subject)
	}
	return nil
}

// Verify checks a signed policy as an agent receives it and returns the
// parsed policy. current is the version the agent holds (0 for none). In
// order:
//
//   - the document is well formed (ReasonMalformed);
//   - its first certificate is a policy-signing certificate: not a CA,
//     EKUPolicySigning as its only extended key usage, digital signatures
//     allowed, the URI SAN spiffe://<roots' trust domain>/policy (else
//     ReasonWrongEKU);
//   - it is issued directly by one of the pinned roots (ReasonUntrusted):
//     neither the intermediate that issues leaves nor anything it signs
//     can sign a policy;
//   - it is valid now and was valid at SignedAt, which is not more than
//     MaxClockSkew ahead of now (ReasonExpired, ReasonNotYetValid);
//   - the signature over SignedMessage is its key's (ReasonBadSignature):
//     an edited policy, version or time with the old signature fails here;
//   - it has a ValidUntil and now is not past it (ReasonPastValidUntil):
//     a genuine but old signing is refused even by an agent holding none;
//   - Version is greater than current (ReasonRollback);
//   - the policy parses (ReasonInvalidPolicy).
//
// The signing certificate must be valid now: the CA re-signs the current
// policy with a new signing certificate before the old one expires. An
// agent that reloads the policy it stored at start passes current 0 and,
// as now, the document's SignedAt (so that a document or signing
// certificate that expired while the agent was down does not leave it
// without a policy; it then knows the policy is past ValidUntil). One
// that receives the version it holds again skips Verify if it is the same
// document; a re-signing of it (IsResigning) it verifies with current
// one below its version.
func Verify(d *SignedPolicy, roots *certs.Roots, now time.Time, current uint64) (*Policy, error) {
	if d == nil {
		return nil, refuse(ReasonMalformed, "no document")
	}
	if roots == nil {
		return nil, refuse(ReasonUntrusted, "no pinned root")
	}
	if err := d.checkForm(); err != nil {
		return nil, err
	}
	chain := make([]*x509.Certificate, len(d.Chain))
	for i, der := range d.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, refuse(ReasonMalformed, "certificate %d: %v", i, err)
		}
		chain[i] = c
	}
	leaf := chain[0]
	if err := checkSignerProfile(leaf); err != nil {
		return nil, err
	}
	if want := PolicySignerURI(roots.TrustDomain).String(); leaf.URIs[0].String() != want {
		return nil, refuse(ReasonWrongEKU, "signing certificate is %s, want %s", leaf.URIs[0], want)
	}
	if err := checkIssuedByRoot(leaf, chain[1:], roots); err != nil {
		return nil, err
	}
	if len(leaf.UnhandledCriticalExtensions) > 0 {
		return nil, refuse(ReasonUntrusted, "signing certificate has an unknown critical extension %s", leaf.UnhandledCriticalExtensions[0])
	}
	switch {
	case now.Before(leaf.NotBefore):
		return nil, refuse(ReasonNotYetValid, "signing certificate is valid from %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return nil, refuse(ReasonExpired, "signing certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case d.SignedAt.After(now.Add(MaxClockSkew)):
		return nil, refuse(ReasonNotYetValid, "signed at %s, in the future", d.SignedAt.UTC().Format(time.RFC3339))
	case d.SignedAt.Before(leaf.NotBefore) || d.SignedAt.After(leaf.NotAfter):
		return nil, refuse(ReasonExpired, "signed at %s, outside the signing certificate's validity", d.SignedAt.UTC().Format(time.RFC3339))
	}
	if err := checkSignature(leaf, d.SignedMessage(), d.Signature); err != nil {
		return nil, refuse(ReasonBadSignature, "%v", err)
	}
	if err := checkFresh(d, now); err != nil {
		return nil, err
	}
	if d.Version <= current {
		if d.Version == current {
			return nil, refuse(ReasonRollback, "version %d is the one held", d.Version)
		}
		return nil, refuse(ReasonRollback, "version %d is older than the version held, %d", d.Version, current)
	}
	pol, err := Parse(d.Policy)
	if err != nil {
		return nil, refuse(ReasonInvalidPolicy, "signed policy does not parse: %v", err)
	}
	return pol, nil
}

// checkIssuedByRoot verifies that leaf is signed by one of the pinned
// roots, itself: a chain through an intermediate is refused even when it
// leads to the root.
func checkIssuedByRoot(leaf *x509.Certificate, rest []*x509.Certificate, roots *certs.Roots) error {
	for _, r := range roots.Certificates() {
		if !bytes.Equal(leaf.RawIssuer, r.RawSubject) {
			continue
		}
		if err := leaf.CheckSignatureFrom(r); err == nil {
			return nil
		}
	}
	// Say why, for the log.
	opts := x509.VerifyOptions{Roots: roots.Pool(), Intermediates: x509.NewCertPool(), CurrentTime: leaf.NotBefore.Add(time.Minute),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	for _, c := range rest {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err == nil {
		return refuse(ReasonUntrusted, "signing certificate %q is issued by %q, not by the pinned root", leaf.Subject, leaf.Issuer)
	}
	return refuse(ReasonUntrusted, "signing certificate %q (issuer %q) does not chain to the pinned root", leaf.Subject, leaf.Issuer)
}

// checkSignature verifies sig over msg with c's key, the way Sign makes it.
func checkSignature(c *x509.Certificate, msg, sig []byte) error {
	var alg x509.SignatureAlgorithm
	switch c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		alg = x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		alg = x509.SHA256WithRSA
	case ed25519.PublicKey:
		alg = x509.PureEd25519
	default:
		return fmt.Errorf("unsupported signing key %T", c.PublicKey)
	}
	if err := c.CheckSignature(alg, msg, sig); err != nil {
		return errors.New("signature does not match the document and the signing certificate")
	}
	return nil
}
