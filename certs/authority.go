package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.step.sm/crypto/x509util"
)

// Lifetimes of the CA certificates created at init.
const (
	RootLifetime         = 10 * 365 * 24 * time.Hour
	IntermediateLifetime = 5 * 365 * 24 * time.Hour
	ServerLifetime       = 30 * 24 * time.Hour
)

// LongLivedBackdate is how long before their creation the root, the
// intermediate and the server TLS certificate start, so that a machine
// whose clock is behind the CA's by up to this much accepts them, TLS
// handshakes included (which tolerate no skew). It costs nothing against
// lifetimes of a month and more.
const LongLivedBackdate = time.Hour

// rootTemplate: a self-signed CA that may sign one level of intermediates.
const rootTemplate = `{
	"subject": {"commonName": {{ toJson .CommonName }}, "organization": ["certmesh"]},
	"issuer": {"commonName": {{ toJson .CommonName }}, "organization": ["certmesh"]},
	"keyUsage": ["certSign", "crlSign"],
	"basicConstraints": {"isCA": true, "maxPathLen": 1}
}`

// intermediateTemplate: the online CA, limited by name constraints to the
// trust domain's names and the overlay ranges, and optionally to email
// domains (see PermitEmailDomains; an empty list writes no email subtree).
const intermediateTemplate = `{
	"subject": {"commonName": {{ toJson .CommonName }}, "organization": ["certmesh"]},
	"keyUsage": ["certSign", "crlSign"],
	"basicConstraints": {"isCA": true, "maxPathLen": 0},
	"nameConstraints": {
		"critical": true,
		"permittedDNSDomains": {{ toJson .DNSDomains }},
		"permittedURIDomains": {{ toJson .URIDomains }},
		"permittedIPRanges": {{ toJson .IPRanges }},
		"permittedEmailAddresses": {{ toJson .EmailDomains }}
	}
}`

// serverTemplate: TLS certificate of the CA and coordinator. Agents check
// the SPIFFE ID and the server.<td> name, never the address they dialled.
const serverTemplate = `{
	"subject": {"commonName": {{ toJson .DNSName }}},
	"dnsNames": [{{ toJson .DNSName }}],
	"uris": [{{ toJson .URI }}],
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["serverAuth", "clientAuth"]
}`

// KeyPair is a certificate with its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewKey generates an ECDSA P-256 key, the algorithm of every certmesh CA
// and software device key.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating P-256 key: %w", err)
	}
	return k, nil
}

func renderAndSign(tmplText string, data x509util.TemplateData, key crypto.Signer, parent *KeyPair, notBefore time.Time, life time.Duration) (*x509.Certificate, error) {
	csr, err := x509util.CreateCertificateRequest("", nil, key)
	if err != nil {
		return nil, fmt.Errorf("creating request: %w", err)
	}
	if parent == nil { // self-signed
		return signRequest(tmplText, data, csr, &KeyPair{Key: key}, notBefore, life)
	}
	return signRequest(tmplText, data, csr, parent, notBefore, life)
}

// signRequest renders the template for the request's subject key and signs
// it with parent (parent.Cert nil: self-signed by parent.Key).
func signRequest(tmplText string, data x509util.TemplateData, csr *x509.CertificateRequest, parent *KeyPair, notBefore time.Time, life time.Duration) (*x509.Certificate, error) {
	c, err := x509util.NewCertificate(csr, x509util.WithTemplate(tmplText, data))
	if err != nil {
		return nil, fmt.Errorf("rendering template: %w", err)
	}
	tmpl := c.GetCertificate()
	tmpl.NotBefore = notBefore.Add(-LongLivedBackdate)
	tmpl.NotAfter = notBefore.Add(life)
	parentCert := parent.Cert
	if parentCert == nil {
		parentCert = tmpl
	}
	cert, err := x509util.CreateCertificate(tmpl, parentCert, csr.PublicKey, parent.Key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	return cert, nil
}

// NewRoot creates the self-signed root of a trust domain.
func NewRoot(td TrustDomain, now time.Time) (*KeyPair, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	cert, err := renderAndSign(rootTemplate, x509util.TemplateData{"CommonName": "certmesh root " + string(td)}, key, nil, now, RootLifetime)
	if err != nil {
		return nil, fmt.Errorf("creating root CA: %w", err)
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// IntermediateOption changes the intermediate NewIntermediate creates.
type IntermediateOption func(*intermediateOptions)

type intermediateOptions struct {
	emailDomains []string
}

// PermitEmailDomains limits the email addresses (rfc822Name SANs of user
// certificates) the intermediate may certify to mailboxes at these DNS
// domains. A domain with a leading '.' means its sub-domains; Go 1.26
// matches a domain without one like a DNS constraint (the domain and its
// sub-domains), OpenSSL the domain alone.
//
// Without this option the intermediate has no email constraint, and any
// email SAN is permitted: name constraints apply per name type (RFC 5280
// 4.2.1.10, and so Go and OpenSSL check them), so the DNS, URI and IP
// subtrees never refuse a user certificate, which has only an email and a
// URI SAN. That is the default because the intermediate is made at init and
// lives for years, while the allowed email domains are an identity-provider
// setting that may change; the CA refuses logins outside them. A deployment
// that knows its domains for good can pass them here, so that a stolen
// intermediate cannot certify an address outside them either.
func PermitEmailDomains(domains ...string) IntermediateOption {
	return func(o *intermediateOptions) { o.emailDomains = append(o.emailDomains, domains...) }
}

// NewIntermediate creates the online issuing CA, signed by the root and
// constrained to the trust domain and the overlay ranges.
func NewIntermediate(root *KeyPair, td TrustDomain, overlays []netip.Prefix, now time.Time, opts ...IntermediateOption) (*KeyPair, error) {
	var o intermediateOptions
	for _, opt := range opts {
		opt(&o)
	}
	emailDomains := []string{}
	for _, d := range o.emailDomains {
		if _, err := ParseTrustDomain(strings.TrimPrefix(d, ".")); err != nil {
			return nil, fmt.Errorf("permitted email domain %q: want a lower-case DNS name, optionally with a leading '.'", d)
		}
		emailDomains = append(emailDomains, d)
	}
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	ranges := make([]string, len(overlays))
	for i, p := range overlays {
		ranges[i] = p.Masked().String()
	}
	data := x509util.TemplateData{
		"CommonName":   "certmesh intermediate " + string(td),
		"DNSDomains":   []string{string(td)},
		"URIDomains":   []string{string(td)},
		"IPRanges":     ranges,
		"EmailDomains": emailDomains,
	}
	cert, err := renderAndSign(intermediateTemplate, data, key, root, now, IntermediateLifetime)
	if err != nil {
		return nil, fmt.Errorf("creating intermediate CA: %w", err)
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// NewServerCertificate issues the TLS certificate of the CA/coordinator,
// signed by the intermediate, for the name server.<td> and spiffe://<td>/server.
func NewServerCertificate(issuer *KeyPair, td TrustDomain, now time.Time) (*KeyPair, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	data := x509util.TemplateData{"DNSName": ServerName(td), "URI": ServerURI(td).String()}
	cert, err := renderAndSign(serverTemplate, data, key, issuer, now, ServerLifetime)
	if err != nil {
		return nil, fmt.Errorf("creating server certificate: %w", err)
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// IssueServerCertificate issues the server TLS certificate (as
// NewServerCertificate) for the key of csr, whose holder keeps the private
// key: a coordinator renewing its certificate at the CA. The CSR's
// signature must verify and its key be ECDSA P-256; its names are ignored.
func IssueServerCertificate(issuer *KeyPair, td TrustDomain, csr *x509.CertificateRequest, now time.Time) (*x509.Certificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("server certificate request: signature: %w", err)
	}
	if pub, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("server certificate request: want an ECDSA P-256 key, got %T", csr.PublicKey)
	}
	data := x509util.TemplateData{"DNSName": ServerName(td), "URI": ServerURI(td).String()}
	cert, err := signRequest(serverTemplate, data, csr, issuer, now, ServerLifetime)
	if err != nil {
		return nil, fmt.Errorf("creating server certificate: %w", err)
	}
	return cert, nil
}
