package certs_test

import (
	"crypto"
	"crypto/x509"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// testEK is an EK fingerprint for TPM-level test certificates.
const testEK = certs.EKFingerprint("0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0")

func TestIssuanceRoundTrip(t *testing.T) {
	ca := testca.New(t, td)
	tests := []struct {
		name        string
		addresses   []netip.Addr
		attestation certs.AttestationLevel
		tags        []certs.Tag
	}{
		{"token dual-stack", addrs("100.64.0.7", "fd7a:c3e7:5e00::7"), certs.AttestationToken, nil},
		{"tpm with tags", addrs("100.64.1.1", "fd7a:c3e7:5e00::101"), certs.AttestationTPM, []certs.Tag{"db", "prod-eu"}},
		{"IPv4 only", addrs("100.127.255.254"), certs.AttestationToken, []certs.Tag{"x"}},
		{"IPv6 only", addrs("fd7a:c3e7:5e00:ffff::1"), certs.AttestationTPM, nil},
		{"several addresses", addrs("100.64.0.1", "100.64.0.2", "fd7a:c3e7:5e00::1"), certs.AttestationToken, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ca.NewProfile(t, "alpha")
			p.Addresses, p.Attestation, p.Tags = tt.addresses, tt.attestation, tt.tags
			if tt.attestation == certs.AttestationTPM {
				p.EK = testEK
			}
			b, key := ca.IssueMachine(t, p)
			m := b.Machine
			now := time.Now()

			id, err := certs.Verify(b, ca.Roots(), nil, now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.TrustDomain != td || id.DeviceID != p.DeviceID || id.Hostname != p.Hostname ||
				id.WireGuardKey != p.WireGuardKey || id.Attestation != p.Attestation || id.EK != p.EK {
				t.Errorf("identity %+v does not match profile %+v", id, p)
			}
			if !slices.Equal(id.Addresses, p.Addresses) || !slices.Equal(id.Tags, p.Tags) {
				t.Errorf("identity addresses %v tags %v, want %v %v", id.Addresses, id.Tags, p.Addresses, p.Tags)
			}
			if id.Serial != m.SerialNumber.Text(16) || !id.NotBefore.Equal(m.NotBefore) || !id.NotAfter.Equal(m.NotAfter) {
				t.Errorf("identity serial/validity %s %s..%s, certificate %x %s..%s", id.Serial, id.NotBefore, id.NotAfter, m.SerialNumber, m.NotBefore, m.NotAfter)
			}
			for i, pfx := range id.AllowedIPs() {
				want := 32
				if p.Addresses[i].Is6() {
					want = 128
				}
				if pfx.Addr() != p.Addresses[i] || pfx.Bits() != want {
					t.Errorf("AllowedIPs[%d] = %s, want %s/%d", i, pfx, p.Addresses[i], want)
				}
			}
			if len(id.AllowedIPs()) != len(p.Addresses) {
				t.Errorf("AllowedIPs %v for %d addresses", id.AllowedIPs(), len(p.Addresses))
			}
			for _, a := range p.Addresses {
				if !id.HasAddress(a) {
					t.Errorf("HasAddress(%s) = false", a)
				}
			}

			// The certificate itself, read independently of Verify.
			if len(m.URIs) != 1 || m.URIs[0].String() != "spiffe://corp.example/device/"+string(p.DeviceID) {
				t.Errorf("URI SANs %v", m.URIs)
			}
			if !slices.Equal(m.DNSNames, []string{"alpha.corp.example"}) {
				t.Errorf("DNS SANs %v", m.DNSNames)
			}
			if len(m.IPAddresses) != len(p.Addresses) {
				t.Errorf("IP SANs %v", m.IPAddresses)
			}
			for i, ip := range m.IPAddresses {
				a, _ := netip.AddrFromSlice(ip)
				if a.Unmap() != p.Addresses[i] {
					t.Errorf("IP SAN %d = %s, want %s", i, ip, p.Addresses[i])
				}
			}
			if m.IsCA || m.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(m.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Errorf("IsCA %v KeyUsage %v EKU %v, want a client-auth leaf", m.IsCA, m.KeyUsage, m.ExtKeyUsage)
			}
			if !m.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Error("the certificate's public key is not the device key")
			}
			if m.CheckSignatureFrom(ca.Intermediate().Cert) != nil {
				t.Error("not signed by the intermediate")
			}

			wg, ok := extension(m, certs.OIDWireGuardKey)
			if !ok {
				t.Fatal("no WireGuard key extension")
			}
			var raw []byte
			if s := cryptobyte.String(wg.Value); !s.ReadASN1Bytes(&raw, cbasn1.OCTET_STRING) || !s.Empty() || len(raw) != 32 || [32]byte(raw) != p.WireGuardKey {
				t.Errorf("WireGuard extension %x is not a 32-byte OCTET STRING of the key", wg.Value)
			}
			at, ok := extension(m, certs.OIDAttestation)
			var level cryptobyte.String
			wantAtt := string(p.Attestation)
			if p.EK != "" {
				wantAtt += ";ek-sha256=" + string(p.EK)
			}
			if s := cryptobyte.String(at.Value); !ok || !s.ReadASN1(&level, cbasn1.UTF8String) || !s.Empty() || string(level) != wantAtt {
				t.Errorf("attestation extension %x, want UTF8String %q", at.Value, wantAtt)
			}
			tg, ok := extension(m, certs.OIDTags)
			if ok != (len(p.Tags) > 0) {
				t.Errorf("tags extension present = %v with %d tags", ok, len(p.Tags))
			}
			if ok {
				var seq cryptobyte.String
				s := cryptobyte.String(tg.Value)
				if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
					t.Fatalf("tags extension %x is not a SEQUENCE", tg.Value)
				}
				var got []certs.Tag
				for !seq.Empty() {
					var tag cryptobyte.String
					if !seq.ReadASN1(&tag, cbasn1.UTF8String) {
						t.Fatalf("tags extension %x holds a non-UTF8String", tg.Value)
					}
					got = append(got, certs.Tag(tag))
				}
				if !slices.Equal(got, p.Tags) {
					t.Errorf("tags extension %v, want %v", got, p.Tags)
				}
			}
			for _, oid := range []string{certs.OIDWireGuardKey.String(), certs.OIDAttestation.String(), certs.OIDTags.String()} {
				for _, e := range m.Extensions {
					if e.Id.String() == oid && e.Critical {
						t.Errorf("extension %s is critical", oid)
					}
				}
			}

			// The wire form round-trips too.
			if id2, err := verifyWire(b.Wire(), ca.Roots(), now); err != nil || id2.DeviceID != id.DeviceID {
				t.Errorf("wire round trip: %v", err)
			}
		})
	}
}

func TestOpenSSLReadsMachineCertificate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	ca := testca.New(t, td)
	p := ca.NewProfile(t, "alpha")
	p.Attestation, p.Tags, p.EK = certs.AttestationTPM, []certs.Tag{"db"}, testEK
	b, _ := ca.IssueMachine(t, p)
	file := filepath.Join(t.TempDir(), "machine.pem")
	if err := os.WriteFile(file, certs.EncodePEM(b.Machine), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "x509", "-noout", "-text", "-in", file).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"URI:spiffe://corp.example/device/" + string(p.DeviceID),
		"DNS:alpha.corp.example",
		"IP Address:100.64.0.1",
		"TLS Web Client Authentication",
		certs.OIDWireGuardKey.String() + ":",
		certs.OIDAttestation.String() + ":",
		certs.OIDTags.String() + ":",
		"tpm;ek-sha256=" + string(testEK), // the attestation level and EK, readable
	} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl output lacks %q:\n%s", want, text)
		}
	}
	if !regexp.MustCompile(`Subject: ?CN ?= ?alpha\.corp\.example\n`).MatchString(text) {
		t.Errorf("openssl shows another subject:\n%s", text)
	}
	if strings.Count(text, "IP Address:") != 2 {
		t.Errorf("openssl shows %d IP SANs, want 2:\n%s", strings.Count(text, "IP Address:"), text)
	}
	for _, oid := range []string{certs.OIDWireGuardKey.String(), certs.OIDAttestation.String(), certs.OIDTags.String()} {
		if strings.Contains(text, oid+": critical") {
			t.Errorf("openssl shows extension %s as critical:\n%s", oid, text)
		}
	}
}

func TestIntermediateIsConstrained(t *testing.T) {
	overlays := []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("fd7a:c3e7:5e00::/48")}
	ca := testca.New(t, td, overlays...)
	in, root := ca.Intermediate().Cert, ca.Root().Cert
	if !in.IsCA || !in.BasicConstraintsValid || in.MaxPathLen != 0 || !in.MaxPathLenZero {
		t.Errorf("intermediate IsCA %v MaxPathLen %d (zero %v), want a CA with MaxPathLen 0", in.IsCA, in.MaxPathLen, in.MaxPathLenZero)
	}
	if in.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("intermediate KeyUsage %v", in.KeyUsage)
	}
	if !in.PermittedDNSDomainsCritical {
		t.Error("name constraints are not critical")
	}
	if nc, ok := extension(in, []int{2, 5, 29, 30}); !ok || !nc.Critical {
		t.Error("no critical name constraints extension")
	}
	if !slices.Equal(in.PermittedDNSDomains, []string{string(td)}) || !slices.Equal(in.PermittedURIDomains, []string{string(td)}) {
		t.Errorf("permitted DNS %v URI %v, want [%s]", in.PermittedDNSDomains, in.PermittedURIDomains, td)
	}
	var ranges []string
	for _, r := range in.PermittedIPRanges {
		ranges = append(ranges, r.String())
	}
	if !slices.Equal(ranges, []string{"100.64.0.0/10", "fd7a:c3e7:5e00::/48"}) {
		t.Errorf("permitted IP ranges %v", ranges)
	}
	if len(in.ExcludedDNSDomains)+len(in.ExcludedURIDomains)+len(in.ExcludedIPRanges) != 0 {
		t.Error("unexpected excluded subtrees")
	}
	if err := in.CheckSignatureFrom(root); err != nil {
		t.Errorf("intermediate not signed by the root: %v", err)
	}
	if in.NotAfter.Sub(in.NotBefore) < certs.IntermediateLifetime {
		t.Errorf("intermediate lives %s", in.NotAfter.Sub(in.NotBefore))
	}
}

func TestRootIsSelfSignedCA(t *testing.T) {
	ca := testca.New(t, td)
	root := ca.Root().Cert
	if !root.IsCA || !root.BasicConstraintsValid || root.MaxPathLen != 1 {
		t.Errorf("root IsCA %v MaxPathLen %d, want a CA with MaxPathLen 1", root.IsCA, root.MaxPathLen)
	}
	if root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("root KeyUsage %v", root.KeyUsage)
	}
	if string(root.RawIssuer) != string(root.RawSubject) {
		t.Errorf("root issuer %q != subject %q", root.Issuer, root.Subject)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root does not verify with its own key: %v", err)
	}
	if len(root.PermittedDNSDomains)+len(root.PermittedIPRanges)+len(root.PermittedURIDomains) != 0 {
		t.Error("root has name constraints")
	}
	if root.NotAfter.Sub(root.NotBefore) < certs.RootLifetime {
		t.Errorf("root lives %s", root.NotAfter.Sub(root.NotBefore))
	}

	fp := certs.FingerprintOf(root)
	colons := strings.ToUpper(string(fp[:2]))
	for i := 2; i < len(fp); i += 2 {
		colons += ":" + strings.ToUpper(string(fp[i:i+2]))
	}
	for _, s := range []string{string(fp), "sha256:" + string(fp), "SHA256:" + colons} {
		got, err := certs.ParseFingerprint(s)
		if err != nil || !got.Matches(root) {
			t.Errorf("ParseFingerprint(%q) = %q, %v; does not match the root", s, got, err)
		}
	}
	if certs.FingerprintOf(ca.Intermediate().Cert).Matches(root) {
		t.Error("the intermediate's fingerprint matches the root")
	}
}

func TestServerCertificate(t *testing.T) {
	ca := testca.New(t, td)
	srv := ca.IssueServer(t)
	c := srv.Cert
	if !slices.Equal(c.DNSNames, []string{"server.corp.example"}) {
		t.Errorf("DNS SANs %v", c.DNSNames)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://corp.example/server" {
		t.Errorf("URI SANs %v", c.URIs)
	}
	if c.IsCA || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("IsCA %v EKU %v", c.IsCA, c.ExtKeyUsage)
	}
	inter := x509.NewCertPool()
	inter.AddCert(ca.Intermediate().Cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Roots().Pool(), Intermediates: inter, DNSName: certs.ServerName(td)}); err != nil {
		t.Errorf("server certificate does not verify as %s: %v", certs.ServerName(td), err)
	}
	// It is not a machine certificate.
	if _, err := certs.Verify(certs.Bundle{Machine: c, Intermediates: []*x509.Certificate{ca.Intermediate().Cert}}, ca.Roots(), nil, time.Now()); certs.ReasonOf(err) != certs.ReasonProfile {
		t.Errorf("Verify(server certificate) = %v, want a profile rejection", err)
	}
}
