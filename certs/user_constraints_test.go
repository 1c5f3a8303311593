package certs_test

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

func TestOpenSSLReadsUserCertificate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	ca := testca.New(t, td)
	machine, _ := ca.IssueMachine(t, ca.NewProfile(t, "laptop"))
	b := ca.IssueUser(t, machine, testca.WithEmail("alice@corp.example"), testca.WithGroups("eng", "ops"))
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	user := write("user.pem", certs.EncodePEM(b.User))
	out, err := exec.Command(openssl, "x509", "-noout", "-text", "-in", user).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"email:alice@corp.example",
		"URI:spiffe://corp.example/user/" + b.User.URIs[0].Path[len("/user/"):],
		"TLS Web Client Authentication",
		"Digital Signature",
		certs.OIDGroups.String() + ":",
		certs.OIDDeviceBinding.String() + ":",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl output lacks %q:\n%s", want, text)
		}
	}
	if !regexp.MustCompile(`Subject: ?CN ?= ?alice@corp\.example\n`).MatchString(text) {
		t.Errorf("openssl shows another subject:\n%s", text)
	}
	for _, unwanted := range []string{"CA:TRUE", "DNS:", "IP Address:", certs.OIDWireGuardKey.String() + ":", certs.OIDGroups.String() + ": critical", certs.OIDDeviceBinding.String() + ": critical"} {
		if strings.Contains(text, unwanted) {
			t.Errorf("openssl output shows %q:\n%s", unwanted, text)
		}
	}

	// OpenSSL too accepts the chain, name constraints included, and so it
	// does with an intermediate that constrains emails to corp.example.
	verify := func(t *testing.T, root, inter *x509.Certificate, leaf *x509.Certificate) (string, error) {
		out, err := exec.Command(openssl, "verify", "-purpose", "sslclient",
			"-CAfile", write("root.pem", certs.EncodePEM(root)),
			"-untrusted", write("inter.pem", certs.EncodePEM(inter)),
			write("leaf.pem", certs.EncodePEM(leaf))).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(t, ca.Root().Cert, ca.Intermediate().Cert, b.User); err != nil {
		t.Errorf("openssl verify: %v\n%s", err, out)
	}
	cca := emailConstrainedCA(t, "corp.example")
	cm, _ := cca.IssueMachine(t, cca.NewProfile(t, "laptop"))
	if out, err := verify(t, cca.Root().Cert, cca.Intermediate().Cert, cca.IssueUser(t, cm, testca.WithEmail("alice@corp.example")).User); err != nil {
		t.Errorf("openssl verify, email-constrained intermediate: %v\n%s", err, out)
	}
	if out, err := verify(t, cca.Root().Cert, cca.Intermediate().Cert, cca.IssueUser(t, cm, testca.WithEmail("alice@evil.example")).User); err == nil || !strings.Contains(out, "permitted subtree violation") {
		t.Errorf("openssl verify accepted an email outside the constraint: %v\n%s", err, out)
	}
}

func TestIntermediateEmailConstraints(t *testing.T) {
	// Without PermitEmailDomains the intermediate has no email subtree: its
	// DNS, URI and IP subtrees do not stop a certificate with an email SAN
	// (x509 checks each name type on its own).
	ca := testca.New(t, td)
	if in := ca.Intermediate().Cert; len(in.PermittedEmailAddresses)+len(in.ExcludedEmailAddresses) != 0 {
		t.Errorf("default intermediate constrains emails: %v %v", in.PermittedEmailAddresses, in.ExcludedEmailAddresses)
	}
	m, _ := ca.IssueMachine(t, ca.NewProfile(t, "laptop"))
	for _, email := range []string{"alice@corp.example", "bob@gmail.example", "carol@sub.other.example"} {
		b := ca.IssueUser(t, m, testca.WithEmail(email))
		// Go's own chain verification, name constraints included.
		inter := x509.NewCertPool()
		inter.AddCert(ca.Intermediate().Cert)
		if _, err := b.User.Verify(x509.VerifyOptions{Roots: ca.Roots().Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("x509 Verify of a user certificate for %s: %v", email, err)
		}
		if id, err := certs.Verify(b, ca.Roots(), nil, time.Now()); err != nil || id.User == nil {
			t.Errorf("certs.Verify of a user certificate for %s: %v, rejected %v", email, err, id.UserRejected)
		}
	}

	// With it, only those domains.
	cca := emailConstrainedCA(t, "corp.example", ".partner.example")
	in := cca.Intermediate().Cert
	if !slices.Equal(in.PermittedEmailAddresses, []string{"corp.example", ".partner.example"}) || !in.PermittedDNSDomainsCritical {
		t.Errorf("permitted emails %v (critical %v)", in.PermittedEmailAddresses, in.PermittedDNSDomainsCritical)
	}
	if !slices.Equal(in.PermittedDNSDomains, []string{string(td)}) || !slices.Equal(in.PermittedURIDomains, []string{string(td)}) || len(in.PermittedIPRanges) != 2 {
		t.Errorf("the email option changed the other constraints: DNS %v URI %v IP %v", in.PermittedDNSDomains, in.PermittedURIDomains, in.PermittedIPRanges)
	}
	cm, _ := cca.IssueMachine(t, cca.NewProfile(t, "laptop"))
	if _, err := certs.Verify(cm, cca.Roots(), nil, time.Now()); err != nil {
		t.Fatalf("machine certificate under an email-constrained intermediate: %v", err)
	}
	for email, ok := range map[string]bool{
		"alice@corp.example":        true,
		"bob@eu.partner.example":    true,
		"eve@evil.example":          false,
		"eve@corp.example.evil":     false,
		"eve@partner.example.evil":  false,
		"eve@notcorp.example":       false,
		"mallory@other.example.com": false,
	} {
		id, err := certs.Verify(cca.IssueUser(t, cm, testca.WithEmail(email)), cca.Roots(), nil, time.Now())
		if err != nil {
			t.Fatalf("%s: Verify: %v (the machine must stand)", email, err)
		}
		if ok && id.User == nil {
			t.Errorf("%s refused: %v", email, id.UserRejected)
		}
		if !ok && certs.ReasonOf(id.UserError()) != certs.ReasonUserNameConstraints {
			t.Errorf("%s: user %+v rejected %v, want %q", email, id.User, id.UserRejected, certs.ReasonUserNameConstraints)
		}
	}

	root := ca.Root()
	for _, bad := range []string{"", "Corp.Example", "alice@corp.example", "..corp.example", "corp.example."} {
		if _, err := certs.NewIntermediate(root, td, testca.DefaultOverlays, time.Now(), certs.PermitEmailDomains(bad)); err == nil {
			t.Errorf("PermitEmailDomains(%q) accepted", bad)
		}
	}
}
