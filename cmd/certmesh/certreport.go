package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/policy"
	"github.com/certmesh/certmesh/translog"
)

// inspectReport is what `certmesh cert inspect` finds, printed as text or,
// with --json, as this document.
type inspectReport struct {
	Certificates []inspectedCert `json:"certificates"`
	RootSHA256   string          `json:"root_sha256,omitempty"`
	CRL          *inspectedCRL   `json:"crl,omitempty"`
	Verdict      *inspectVerdict `json:"verdict,omitempty"` // nil without a root
}

// inspectedCert is one certificate, every field an auditor checks decoded.
type inspectedCert struct {
	Index     int       `json:"index"`
	Kind      string    `json:"kind"` // "leaf" or "CA"
	Error     string    `json:"error,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	SHA256    string    `json:"sha256,omitempty"`
	KeySHA256 string    `json:"key_sha256,omitempty"`
	LogLeaf   string    `json:"log_leaf,omitempty"`
	// LogEntry is where --log found it: "index N", "NOT IN THE LOG" or
	// why the lookup failed.
	LogEntry        string            `json:"log_entry,omitempty"`
	SPIFFEIDs       []string          `json:"spiffe_ids,omitempty"`
	DNSNames        []string          `json:"dns_names,omitempty"`
	Emails          []string          `json:"emails,omitempty"`
	IPAddresses     []string          `json:"ip_addresses,omitempty"`
	KeyUsage        []string          `json:"key_usage,omitempty"`
	ExtKeyUsage     []string          `json:"ext_key_usage,omitempty"`
	NameConstraints *nameConstraints  `json:"name_constraints,omitempty"`
	Extensions      map[string]string `json:"certmesh_extensions,omitempty"` // by name (certs.DescribeExtension)
	extOrder        []string
	notInLog        bool
}

// nameConstraints are a CA certificate's name constraints (RFC 5280 4.2.1.10).
type nameConstraints struct {
	Critical      bool     `json:"critical"`
	PermittedDNS  []string `json:"permitted_dns,omitempty"`
	ExcludedDNS   []string `json:"excluded_dns,omitempty"`
	PermittedIP   []string `json:"permitted_ip,omitempty"`
	ExcludedIP    []string `json:"excluded_ip,omitempty"`
	PermittedURI  []string `json:"permitted_uri_domains,omitempty"`
	ExcludedURI   []string `json:"excluded_uri_domains,omitempty"`
	PermittedMail []string `json:"permitted_email,omitempty"`
	ExcludedMail  []string `json:"excluded_email,omitempty"`
}

type inspectedCRL struct {
	Number     string    `json:"number"`
	Entries    int       `json:"entries"`
	NextUpdate time.Time `json:"next_update"`
	Stale      bool      `json:"stale"`
}

// inspectVerdict is certs.Verify's answer on the bundle.
type inspectVerdict struct {
	Verified     bool   `json:"verified"`
	Reason       string `json:"reason,omitempty"` // the typed reason of a refusal
	Error        string `json:"error,omitempty"`
	Name         string `json:"name,omitempty"`
	DeviceID     string `json:"device_id,omitempty"`
	Attestation  string `json:"attestation,omitempty"`
	WireGuardKey string `json:"wireguard_key,omitempty"`
	UserRefused  string `json:"user_refused,omitempty"`
}

// refusal says what of the report is a refusal (exit 1), or "".
func (r *inspectReport) refusal() string {
	var why []string
	for _, c := range r.Certificates {
		if c.Error != "" {
			why = append(why, fmt.Sprintf("certificate [%d] cannot be parsed", c.Index))
		}
		if c.notInLog {
			why = append(why, fmt.Sprintf("certificate [%d] is not in the transparency log", c.Index))
		}
	}
	if v := r.Verdict; v != nil {
		if !v.Verified {
			why = append(why, "the bundle is refused ("+v.Reason+")")
		} else if v.UserRefused != "" {
			why = append(why, "the user certificate is refused")
		}
	}
	return strings.Join(why, "; ")
}

var keyUsageNames = []struct {
	bit  x509.KeyUsage
	name string
}{
	{x509.KeyUsageDigitalSignature, "digitalSignature"}, {x509.KeyUsageContentCommitment, "contentCommitment"},
	{x509.KeyUsageKeyEncipherment, "keyEncipherment"}, {x509.KeyUsageDataEncipherment, "dataEncipherment"},
	{x509.KeyUsageKeyAgreement, "keyAgreement"}, {x509.KeyUsageCertSign, "keyCertSign"},
	{x509.KeyUsageCRLSign, "cRLSign"}, {x509.KeyUsageEncipherOnly, "encipherOnly"}, {x509.KeyUsageDecipherOnly, "decipherOnly"},
}

var extKeyUsageNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
	x509.ExtKeyUsageCodeSigning: "codeSigning", x509.ExtKeyUsageEmailProtection: "emailProtection",
	x509.ExtKeyUsageTimeStamping: "timeStamping", x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
}

// inspectCert decodes one certificate.
func inspectCert(i int, der []byte) inspectedCert {
	out := inspectedCert{Index: i}
	b, err := certs.ParseBundle(certs.WireBundle{Machine: der})
	if err != nil {
		out.Error = err.Error()
		return out
	}
	c := b.Machine
	sum := sha256.Sum256(der)
	spki := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	out.Kind = "leaf"
	if c.IsCA {
		out.Kind = "CA"
	}
	out.Subject, out.Issuer, out.Serial = c.Subject.String(), c.Issuer.String(), c.SerialNumber.Text(16)
	out.NotBefore, out.NotAfter = c.NotBefore.UTC(), c.NotAfter.UTC()
	out.SHA256, out.KeySHA256 = hex.EncodeToString(sum[:]), hex.EncodeToString(spki[:])
	if h, err := translog.CertificateLeafHash(der); err == nil && !c.IsCA {
		out.LogLeaf = fmt.Sprint(h)
	}
	for _, u := range c.URIs {
		out.SPIFFEIDs = append(out.SPIFFEIDs, u.String())
	}
	out.DNSNames, out.Emails = c.DNSNames, c.EmailAddresses
	for _, ip := range c.IPAddresses {
		out.IPAddresses = append(out.IPAddresses, ip.String())
	}
	for _, k := range keyUsageNames {
		if c.KeyUsage&k.bit != 0 {
			out.KeyUsage = append(out.KeyUsage, k.name)
		}
	}
	for _, e := range c.ExtKeyUsage {
		name, ok := extKeyUsageNames[e]
		if !ok {
			name = fmt.Sprintf("eku(%d)", e)
		}
		out.ExtKeyUsage = append(out.ExtKeyUsage, name)
	}
	for _, o := range c.UnknownExtKeyUsage {
		name := o.String()
		if o.Equal(policy.EKUPolicySigning) {
			name = "certmesh policy signing (" + name + ")"
		}
		out.ExtKeyUsage = append(out.ExtKeyUsage, name)
	}
	if nc := constraintsOf(c); nc != nil {
		out.NameConstraints = nc
	}
	for _, e := range c.Extensions {
		if name, val := certs.DescribeExtension(e); name != "" {
			if out.Extensions == nil {
				out.Extensions = map[string]string{}
			}
			out.Extensions[name] = val
			out.extOrder = append(out.extOrder, name)
		}
	}
	return out
}

func constraintsOf(c *x509.Certificate) *nameConstraints {
	nc := &nameConstraints{Critical: c.PermittedDNSDomainsCritical,
		PermittedDNS: c.PermittedDNSDomains, ExcludedDNS: c.ExcludedDNSDomains,
		PermittedURI: c.PermittedURIDomains, ExcludedURI: c.ExcludedURIDomains,
		PermittedMail: c.PermittedEmailAddresses, ExcludedMail: c.ExcludedEmailAddresses}
	for _, n := range c.PermittedIPRanges {
		nc.PermittedIP = append(nc.PermittedIP, n.String())
	}
	for _, n := range c.ExcludedIPRanges {
		nc.ExcludedIP = append(nc.ExcludedIP, n.String())
	}
	if len(nc.PermittedDNS)+len(nc.ExcludedDNS)+len(nc.PermittedIP)+len(nc.ExcludedIP)+
		len(nc.PermittedURI)+len(nc.ExcludedURI)+len(nc.PermittedMail)+len(nc.ExcludedMail) == 0 {
		return nil
	}
	return nc
}

// printText prints the report as `certmesh cert inspect` does without --json.
func (r *inspectReport) printText(w io.Writer) {
	for _, c := range r.Certificates {
		if c.Error != "" {
			fmt.Fprintf(w, "[%d] unparseable: %s\n", c.Index, c.Error)
			continue
		}
		fmt.Fprintf(w, "[%d] %s  %s\n", c.Index, c.Kind, c.Subject)
		line := func(name, format string, args ...any) {
			fmt.Fprintf(w, "    %-13s %s\n", name, fmt.Sprintf(format, args...))
		}
		line("issuer", "%s", c.Issuer)
		line("serial", "%s", c.Serial)
		line("valid", "%s .. %s", c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
		line("sha256", "%s", c.SHA256)
		line("key sha256", "%s", c.KeySHA256)
		if c.LogLeaf != "" {
			line("log leaf", "%s (find it with certmesh audit list --json)", c.LogLeaf)
		}
		for _, u := range c.SPIFFEIDs {
			line("SPIFFE ID", "%s", u)
		}
		if len(c.DNSNames) > 0 {
			line("DNS", "%s", strings.Join(c.DNSNames, ", "))
		}
		if len(c.Emails) > 0 {
			line("email", "%s", strings.Join(c.Emails, ", "))
		}
		for _, ip := range c.IPAddresses {
			line("overlay IP", "%s", ip)
		}
		if len(c.KeyUsage) > 0 {
			line("key usage", "%s", strings.Join(c.KeyUsage, ", "))
		}
		if len(c.ExtKeyUsage) > 0 {
			line("ext key usage", "%s", strings.Join(c.ExtKeyUsage, ", "))
		}
		if nc := c.NameConstraints; nc != nil {
			crit := ""
			if nc.Critical {
				crit = " (critical)"
			}
			for _, p := range []struct {
				what string
				vals []string
			}{
				{"DNS", nc.PermittedDNS}, {"IP", nc.PermittedIP}, {"URI", nc.PermittedURI}, {"email", nc.PermittedMail},
			} {
				if len(p.vals) > 0 {
					line("permits "+p.what, "%s%s", strings.Join(p.vals, ", "), crit)
				}
			}
			for _, p := range []struct {
				what string
				vals []string
			}{
				{"DNS", nc.ExcludedDNS}, {"IP", nc.ExcludedIP}, {"URI", nc.ExcludedURI}, {"email", nc.ExcludedMail},
			} {
				if len(p.vals) > 0 {
					line("excludes "+p.what, "%s%s", strings.Join(p.vals, ", "), crit)
				}
			}
		}
		for _, name := range c.extOrder {
			line(name, "%s", c.Extensions[name])
		}
		if c.LogEntry != "" {
			line("log entry", "%s", c.LogEntry)
		}
	}
	if r.RootSHA256 != "" {
		fmt.Fprintf(w, "root sha256   %s\n", r.RootSHA256)
	}
	if crl := r.CRL; crl != nil {
		stale := ""
		if crl.Stale {
			stale = " (past it: a newer CRL may revoke more)"
		}
		fmt.Fprintf(w, "CRL           number %s, %d entries, next update %s%s\n", crl.Number, crl.Entries, crl.NextUpdate.Format(time.RFC3339), stale)
	}
	if v := r.Verdict; v != nil {
		if !v.Verified {
			fmt.Fprintf(w, "verdict       REFUSED (%s): %s\n", v.Reason, v.Error)
			return
		}
		fmt.Fprintf(w, "verdict       verified: %s, device %s, level %s, WireGuard %s\n", v.Name, v.DeviceID, v.Attestation, v.WireGuardKey)
		if v.UserRefused != "" {
			fmt.Fprintf(w, "user          not accepted: %s\n", v.UserRefused)
		}
	}
}
