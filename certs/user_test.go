package certs_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/x509util"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testca"
)

// userProfile is a complete user profile bound to machine.
func userProfile(t *testing.T, machine *x509.Certificate, email string, groups ...string) certs.UserProfile {
	t.Helper()
	e, err := certs.ParseEmail(email)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := certs.ParseGroups(groups)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p, err := certs.UserProfile{
		TrustDomain: td,
		UserID:      certs.DeriveUserID("https://idp.example", "sub-"+email),
		Email:       e,
		Groups:      gs,
		NotBefore:   now.Add(-time.Minute),
		NotAfter:    now.Add(certs.UserLifetime),
	}.BindToMachine(machine)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// signUser signs a rendered user template with the CA's intermediate.
func signUser(t *testing.T, ca *testca.CA, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	in := ca.Intermediate()
	c, err := x509util.CreateCertificate(tmpl, in.Cert, tmpl.PublicKey, in.Key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestUserIssuanceRoundTrip(t *testing.T) {
	ca := testca.New(t, td)
	mp := ca.NewProfile(t, "laptop")
	mp.Tags = []certs.Tag{"dev"}
	machine, deviceKey := ca.IssueMachine(t, mp)
	tests := []struct {
		name    string
		email   string
		groups  []string
		withCSR bool
	}{
		{"groups, CSR from the device key", "Alice.Smith@Corp.Example", []string{"ops", "eng", "eng", "/admins/db"}, true},
		{"no groups, key from the machine certificate", "bob@corp.example", nil, false},
		{"unicode group", "c+tag@sub.corp.example", []string{"Équipe Réseau", "グループ"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := userProfile(t, machine.Machine, tt.email, tt.groups...)
			var csr *x509.CertificateRequest
			if tt.withCSR {
				var err error
				if csr, err = x509util.CreateCertificateRequest("", nil, deviceKey); err != nil {
					t.Fatal(err)
				}
			}
			tmpl, err := certs.NewUserCertificate(csr, p)
			if err != nil {
				t.Fatalf("NewUserCertificate: %v", err)
			}
			u := signUser(t, ca, tmpl)
			b := machine
			b.User = u
			now := time.Now()

			id, err := certs.Verify(b, ca.Roots(), now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.UserRejected != nil || id.UserError() != nil || id.User == nil {
				t.Fatalf("user rejected: %v", id.UserRejected)
			}
			if id.DeviceID != mp.DeviceID || id.Hostname != mp.Hostname || id.WireGuardKey != mp.WireGuardKey {
				t.Errorf("machine identity %+v does not match %+v", id, mp)
			}
			want := certs.UserIdentity{UserID: p.UserID, Email: p.Email, Groups: p.Groups, Serial: u.SerialNumber.Text(16), NotBefore: u.NotBefore, NotAfter: u.NotAfter}
			if got := *id.User; got.UserID != want.UserID || got.Email != want.Email || !slices.Equal(got.Groups, want.Groups) ||
				got.Serial != want.Serial || !got.NotBefore.Equal(want.NotBefore) || !got.NotAfter.Equal(want.NotAfter) {
				t.Errorf("user identity %+v, want %+v", got, want)
			}
			if !u.NotBefore.Equal(p.NotBefore.Truncate(time.Second)) || !u.NotAfter.Equal(p.NotAfter.Truncate(time.Second)) {
				t.Errorf("validity %s..%s, profile %s..%s", u.NotBefore, u.NotAfter, p.NotBefore, p.NotAfter)
			}
			if !id.NextExpiry().Equal(u.NotAfter) {
				t.Errorf("NextExpiry %s, want the user certificate's NotAfter %s", id.NextExpiry(), u.NotAfter)
			}
			for _, g := range p.Groups {
				if !id.User.InGroup(g) {
					t.Errorf("InGroup(%q) = false", g)
				}
			}
			if id.User.InGroup("nobody") {
				t.Error("InGroup(nobody) = true")
			}
			if got, want := id.DisplayName(), string(p.Email)+" on laptop"; got != want {
				t.Errorf("DisplayName %q, want %q", got, want)
			}

			// The certificate itself, read independently of Verify.
			if !slices.Equal(u.EmailAddresses, []string{string(p.Email)}) || strings.ToLower(tt.email) != string(p.Email) {
				t.Errorf("email SANs %v, want [%s]", u.EmailAddresses, strings.ToLower(tt.email))
			}
			if len(u.URIs) != 1 || u.URIs[0].String() != "spiffe://corp.example/user/"+string(p.UserID) {
				t.Errorf("URI SANs %v", u.URIs)
			}
			if len(u.DNSNames)+len(u.IPAddresses) != 0 {
				t.Errorf("DNS SANs %v IP SANs %v, want none", u.DNSNames, u.IPAddresses)
			}
			if u.Subject.CommonName != string(p.Email) {
				t.Errorf("subject %q", u.Subject)
			}
			if u.IsCA || u.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(u.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Errorf("IsCA %v KeyUsage %v EKU %v, want a client-auth leaf", u.IsCA, u.KeyUsage, u.ExtKeyUsage)
			}
			if !bytes.Equal(u.RawSubjectPublicKeyInfo, machine.Machine.RawSubjectPublicKeyInfo) ||
				!u.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(deviceKey.Public()) {
				t.Error("the user certificate's key is not the device key")
			}
			if _, ok := extension(u, certs.OIDWireGuardKey); ok {
				t.Error("user certificate carries a WireGuard key extension")
			}
			bind, ok := extension(u, certs.OIDDeviceBinding)
			var dev cryptobyte.String
			if s := cryptobyte.String(bind.Value); !ok || bind.Critical || !s.ReadASN1(&dev, cbasn1.UTF8String) || !s.Empty() || string(dev) != string(mp.DeviceID) {
				t.Errorf("device binding extension %x (critical %v), want UTF8String %q", bind.Value, bind.Critical, mp.DeviceID)
			}
			grp, ok := extension(u, certs.OIDGroups)
			if ok != (len(p.Groups) > 0) {
				t.Errorf("groups extension present = %v with %d groups", ok, len(p.Groups))
			}
			if ok {
				if grp.Critical || !bytes.Equal(grp.Value, utf8Seq(sortedSet(tt.groups)...)) {
					t.Errorf("groups extension %x (critical %v), want SEQUENCE OF UTF8String %q", grp.Value, grp.Critical, sortedSet(tt.groups))
				}
			}

			// The wire form round-trips too.
			id2, err := verifyWire(b.Wire(), ca.Roots(), now)
			if err != nil || id2.User == nil || id2.User.Email != p.Email {
				t.Errorf("wire round trip: %v, user %+v rejected %v", err, id2.User, id2.UserRejected)
			}
		})
	}
}

// sortedSet is ss sorted, without duplicates: groups as a certificate
// carries them.
func sortedSet(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return slices.Compact(out)
}

func TestUserProfileValidate(t *testing.T) {
	ca := testca.New(t, td)
	machine, deviceKey := ca.IssueMachine(t, ca.NewProfile(t, "laptop"))
	good := userProfile(t, machine.Machine, "alice@corp.example", "eng")
	if err := good.Validate(); err != nil {
		t.Fatalf("valid profile: %v", err)
	}
	other, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	many := make([]certs.Group, certs.MaxGroups+1)
	for i := range many {
		many[i] = certs.Group(strings.Repeat("g", i+1))
	}
	tests := []struct {
		name string
		edit func(*certs.UserProfile)
	}{
		{"no trust domain", func(p *certs.UserProfile) { p.TrustDomain = "" }},
		{"no user ID", func(p *certs.UserProfile) { p.UserID = "" }},
		{"user ID with a slash", func(p *certs.UserProfile) { p.UserID = "a/b" }},
		{"upper-case user ID", func(p *certs.UserProfile) { p.UserID = "Alice" }},
		{"no email", func(p *certs.UserProfile) { p.Email = "" }},
		{"email not in canonical form", func(p *certs.UserProfile) { p.Email = "Alice@corp.example" }},
		{"email without a domain", func(p *certs.UserProfile) { p.Email = "alice" }},
		{"duplicated group", func(p *certs.UserProfile) { p.Groups = []certs.Group{"eng", "eng"} }},
		{"empty group", func(p *certs.UserProfile) { p.Groups = []certs.Group{""} }},
		{"group with a newline", func(p *certs.UserProfile) { p.Groups = []certs.Group{"eng\nops"} }},
		{"too many groups", func(p *certs.UserProfile) { p.Groups = many }},
		{"no device ID", func(p *certs.UserProfile) { p.DeviceID = "" }},
		{"no device key", func(p *certs.UserProfile) { p.DeviceKey = nil }},
		{"device key of an unknown type", func(p *certs.UserProfile) { p.DeviceKey = "key" }},
		{"no validity", func(p *certs.UserProfile) { p.NotBefore, p.NotAfter = time.Time{}, time.Time{} }},
		{"validity inverted", func(p *certs.UserProfile) { p.NotBefore, p.NotAfter = p.NotAfter, p.NotBefore }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good
			tt.edit(&p)
			if err := p.Validate(); err == nil {
				t.Error("Validate accepted it")
			}
			if _, err := certs.NewUserCertificate(nil, p); err == nil {
				t.Error("NewUserCertificate accepted it")
			}
		})
	}

	// A request must come from the bound device key.
	csr, err := x509util.CreateCertificateRequest("", nil, other)
	if err != nil {
		t.Fatal(err)
	}
	if err := good.CheckRequest(csr); err == nil {
		t.Error("CheckRequest accepted a request signed by another key")
	}
	if _, err := certs.NewUserCertificate(csr, good); err == nil {
		t.Error("NewUserCertificate accepted a request signed by another key")
	}
	if err := good.CheckRequest(nil); err == nil {
		t.Error("CheckRequest accepted no request")
	}
	own, err := x509util.CreateCertificateRequest("", nil, deviceKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := good.CheckRequest(own); err != nil {
		t.Errorf("CheckRequest refused the device's own request: %v", err)
	}
	forged := *own
	forged.Signature = bytes.Clone(own.Signature)
	forged.Signature[len(forged.Signature)-1] ^= 1
	if err := good.CheckRequest(&forged); err == nil {
		t.Error("CheckRequest accepted a request with a broken signature")
	}

	// Binding needs a machine certificate of the profile's trust domain.
	if _, err := (certs.UserProfile{TrustDomain: "other.example"}).BindToMachine(machine.Machine); err == nil {
		t.Error("BindToMachine accepted a machine certificate of another trust domain")
	}
	if _, err := (certs.UserProfile{TrustDomain: td}).BindToMachine(nil); err == nil {
		t.Error("BindToMachine accepted no certificate")
	}
}

func TestUserIDs(t *testing.T) {
	for _, s := range []string{"a", "alice", "a.b-c_d", "0", strings.Repeat("x", 64), string(certs.DeriveUserID("https://idp", "sub"))} {
		if _, err := certs.ParseUserID(s); err != nil {
			t.Errorf("ParseUserID(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "Alice", "a/b", ".a", "a.", "..", "-a", "a b", "a@b", strings.Repeat("x", 65), "é"} {
		if _, err := certs.ParseUserID(s); err == nil {
			t.Errorf("ParseUserID(%q) accepted", s)
		}
	}
	id := certs.DeriveUserID("https://idp.example", "248289761001")
	if len(id) != 32 || id != certs.DeriveUserID("https://idp.example", "248289761001") {
		t.Errorf("DeriveUserID = %q, want 32 stable characters", id)
	}
	for _, other := range []certs.UserID{
		certs.DeriveUserID("https://idp.example", "248289761002"),
		certs.DeriveUserID("https://other.example", "248289761001"),
		certs.DeriveUserID("https://idp.example2", "48289761001"), // same concatenation
	} {
		if other == id {
			t.Errorf("DeriveUserID collides: %q", other)
		}
	}
}

func TestParseEmail(t *testing.T) {
	for in, want := range map[string]string{
		"alice@corp.example":             "alice@corp.example",
		"Alice.Smith@Corp.Example":       "alice.smith@corp.example",
		"a+tag@sub.corp.example":         "a+tag@sub.corp.example",
		"o'brien@corp.example":           "o'brien@corp.example",
		"x@a.b":                          "x@a.b",
		strings.Repeat("l", 64) + "@x.y": strings.Repeat("l", 64) + "@x.y",
	} {
		got, err := certs.ParseEmail(in)
		if err != nil || string(got) != want {
			t.Errorf("ParseEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	e := certs.Email("alice@corp.example")
	if e.Local() != "alice" || e.Domain() != "corp.example" {
		t.Errorf("Local %q Domain %q", e.Local(), e.Domain())
	}
	for _, in := range []string{
		"", "alice", "@corp.example", "alice@", "alice@localhost", "alice@@corp.example", "a@b@corp.example",
		"\"alice\"@corp.example", "alice smith@corp.example", "alice.@corp.example", ".alice@corp.example", "a..b@corp.example",
		"alice@corp..example", "alice@-corp.example", "alice@[127.0.0.1]", "alice@corp.example.", "élise@corp.example",
		"alice@corp.example (comment)", "<alice@corp.example>", "Alice <alice@corp.example>", "alice@corp.example\n",
		strings.Repeat("l", 65) + "@x.y", "a@" + strings.Repeat("b", 250) + ".c",
	} {
		if got, err := certs.ParseEmail(in); err == nil {
			t.Errorf("ParseEmail(%q) = %q, want an error", in, got)
		}
	}
}

func TestParseGroups(t *testing.T) {
	gs, err := certs.ParseGroups([]string{"ops", "eng", "ops", "Platform Team", "/admins/db", "a1b2c3d4-0000-4000-8000-000000000000"})
	if err != nil {
		t.Fatal(err)
	}
	want := []certs.Group{"/admins/db", "Platform Team", "a1b2c3d4-0000-4000-8000-000000000000", "eng", "ops"}
	if !slices.Equal(gs, want) {
		t.Errorf("ParseGroups = %q, want %q", gs, want)
	}
	if gs, err := certs.ParseGroups(nil); err != nil || len(gs) != 0 {
		t.Errorf("ParseGroups(nil) = %q, %v", gs, err)
	}
	for _, g := range []string{"", " eng", "eng ", "eng\tops", "a\x00b", "evil\u202egnp", "zero\u200bwidth", strings.Repeat("g", certs.MaxGroupLength+1), "\xff"} {
		if _, err := certs.ParseGroup(g); err == nil {
			t.Errorf("ParseGroup(%q) accepted", g)
		}
		if _, err := certs.ParseGroups([]string{"ok", g}); err == nil {
			t.Errorf("ParseGroups with %q accepted", g)
		}
	}
	many := make([]string, certs.MaxGroups+1)
	for i := range many {
		many[i] = strings.Repeat("g", i+1)
	}
	if _, err := certs.ParseGroups(many); err == nil {
		t.Errorf("ParseGroups accepted %d groups", len(many))
	}
	if _, err := certs.ParseGroups(append(many[:certs.MaxGroups:certs.MaxGroups], many[0])); err != nil {
		t.Errorf("ParseGroups refused %d distinct groups with a duplicate: %v", certs.MaxGroups, err)
	}
}

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

// emailConstrainedCA is a test CA whose intermediate may certify only
// email addresses at the given domains.
func emailConstrainedCA(t *testing.T, domains ...string) *testca.CA {
	t.Helper()
	root, err := certs.NewRoot(td, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	inter, err := certs.NewIntermediate(root, td, testca.DefaultOverlays, time.Now(), certs.PermitEmailDomains(domains...))
	if err != nil {
		t.Fatal(err)
	}
	return testca.FromKeyPairs(t, td, root, inter)
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
		if id, err := certs.Verify(b, ca.Roots(), time.Now()); err != nil || id.User == nil {
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
	if _, err := certs.Verify(cm, cca.Roots(), time.Now()); err != nil {
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
		id, err := certs.Verify(cca.IssueUser(t, cm, testca.WithEmail(email)), cca.Roots(), time.Now())
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

func TestVerifyUserRejects(t *testing.T) {
	ca := testca.New(t, td)
	sameNames := testca.New(t, td) // another CA whose root and intermediate have our names
	foreign := testca.New(t, "other.example")
	mp := ca.NewProfile(t, "laptop")
	mp.Tags = []certs.Tag{"dev"}
	machine, deviceKey := ca.IssueMachine(t, mp)
	otherDevice, _ := ca.IssueMachine(t, ca.NewProfile(t, "desktop"))
	otherKey, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	baseline, err := certs.Verify(machine, ca.Roots(), now)
	if err != nil {
		t.Fatal(err)
	}
	many := make([]string, certs.MaxGroups+1)
	for i := range many {
		many[i] = strings.Repeat("g", i+1)
	}

	issue := func(opts ...testca.Option) func(*testing.T) certs.WireBundle {
		return func(t *testing.T) certs.WireBundle { return ca.IssueUserWire(t, machine, opts...) }
	}
	// attach puts a user certificate issued for another bundle into ours.
	attach := func(user func(*testing.T) certs.Bundle) func(*testing.T) certs.WireBundle {
		return func(t *testing.T) certs.WireBundle {
			u := user(t)
			b := machine
			for _, c := range u.Intermediates {
				if !slices.ContainsFunc(b.Intermediates, c.Equal) {
					b.Intermediates = append(b.Intermediates, c)
				}
			}
			b.User = u.User
			return b.Wire()
		}
	}
	userURI := func(id string) string { return "spiffe://corp.example/user/" + id }

	tests := []struct {
		name   string
		bundle func(*testing.T) certs.WireBundle
		at     time.Time // zero: now
		want   certs.Reason
	}{
		// Forgeries a hostile coordinator can attempt.
		{name: "user certificate of another device attached", bundle: attach(func(t *testing.T) certs.Bundle { return ca.IssueUser(t, otherDevice) }), want: certs.ReasonUserDeviceMismatch},
		{name: "bound to another device, with our key", bundle: issue(testca.WithBoundDevice(testca.NewDeviceID(t))), want: certs.ReasonUserDeviceMismatch},
		{name: "another subject key, bound to our device", bundle: issue(testca.WithDeviceKey(otherKey)), want: certs.ReasonUserKeyMismatch},
		{name: "issued by another CA with the same names", bundle: issue(testca.WithIssuer(sameNames.Intermediate())), want: certs.ReasonUserUntrusted},
		{name: "issued by another trust domain's CA", bundle: issue(testca.WithIssuer(foreign.Intermediate())), want: certs.ReasonUserUntrusted},
		{name: "another CA's user certificate without its intermediate", bundle: issue(testca.WithIssuer(sameNames.Intermediate()), testca.WithIntermediates(ca.Intermediate().Cert)), want: certs.ReasonUserUntrusted},
		{name: "self-signed by the device key", bundle: issue(testca.WithSelfSigned(), testca.WithDeviceKey(deviceKey)), want: certs.ReasonUserUntrusted},
		{name: "self-signed by another key", bundle: issue(testca.WithSelfSigned(), testca.WithDeviceKey(otherKey)), want: certs.ReasonUserUntrusted},
		{name: "signed by the machine certificate", bundle: issue(testca.WithIssuer(&certs.KeyPair{Cert: machine.Machine, Key: deviceKey})), want: certs.ReasonUserUntrusted},
		{name: "the machine certificate as user certificate", bundle: wire(certs.WireBundle{Machine: machine.Machine.Raw, Intermediates: [][]byte{ca.Intermediate().Cert.Raw}, User: machine.Machine.Raw}), want: certs.ReasonUserProfile},
		{name: "groups swapped after signing", bundle: func(t *testing.T) certs.WireBundle {
			w := ca.IssueUserWire(t, machine, testca.WithGroups("eng"))
			w.User = bytes.Replace(w.User, utf8Seq("eng"), utf8Seq("ops"), 1)
			return w
		}, want: certs.ReasonUserUntrusted},

		// Validity.
		{name: "expired", bundle: issue(testca.WithValidity(now.Add(-13*time.Hour), now.Add(-time.Hour))), want: certs.ReasonUserExpired},
		{name: "verified after its lifetime, the machine still valid", bundle: issue(), at: now.Add(testca.UserLifetime + time.Minute), want: certs.ReasonUserExpired},
		{name: "not yet valid", bundle: issue(testca.WithValidity(now.Add(time.Hour), now.Add(2*time.Hour))), want: certs.ReasonUserNotYetValid},

		// Name constraints and trust domain.
		{name: "user SPIFFE ID in another trust domain", bundle: issue(testca.WithURIs("spiffe://other.example/user/alice")), want: certs.ReasonUserNameConstraints},
		{name: "user SPIFFE ID in a sub-domain", bundle: issue(testca.WithURIs("spiffe://evil.corp.example/user/alice")), want: certs.ReasonUserWrongTrustDomain},
		{name: "DNS SAN outside the trust domain", bundle: issue(testca.WithDNSNames("alice.evil.example")), want: certs.ReasonUserNameConstraints},

		// Profile.
		{name: "no URI SAN", bundle: issue(testca.WithURIs()), want: certs.ReasonUserProfile},
		{name: "two user URIs", bundle: issue(testca.WithURIs(userURI("alice"), userURI("bob"))), want: certs.ReasonUserProfile},
		{name: "device SPIFFE ID", bundle: issue(testca.WithURIs(certs.DeviceURI(td, mp.DeviceID).String())), want: certs.ReasonUserProfile},
		{name: "invalid user ID", bundle: issue(testca.WithURIs(userURI("Alice"))), want: certs.ReasonUserProfile},
		{name: "user ID with a sub-path", bundle: issue(testca.WithURIs(userURI("alice/admin"))), want: certs.ReasonUserProfile},
		{name: "user URI with a query", bundle: issue(testca.WithURIs(userURI("alice") + "?admin=1")), want: certs.ReasonUserProfile},
		{name: "no email", bundle: issue(testca.WithEmails()), want: certs.ReasonUserProfile},
		{name: "two emails", bundle: issue(testca.WithEmails("alice@corp.example", "bob@corp.example")), want: certs.ReasonUserProfile},
		{name: "email not in canonical form", bundle: issue(testca.WithEmails("Alice@corp.example")), want: certs.ReasonUserProfile},
		{name: "email with a quoted local part", bundle: issue(testca.WithEmails(`"alice smith"@corp.example`)), want: certs.ReasonUserProfile},
		{name: "DNS SAN in the trust domain", bundle: issue(testca.WithDNSNames("laptop.corp.example")), want: certs.ReasonUserProfile},
		{name: "IP SAN in the overlay", bundle: issue(testca.WithIPs(mp.Addresses[0])), want: certs.ReasonUserProfile},
		{name: "WireGuard key extension", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDWireGuardKey, Value: testca.OctetString(mp.WireGuardKey[:])})), want: certs.ReasonUserProfile},
		{name: "tags extension", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDTags, Value: utf8Seq("admin")})), want: certs.ReasonUserProfile},
		{name: "no device binding", bundle: issue(testca.WithoutExtension(certs.OIDDeviceBinding)), want: certs.ReasonUserProfile},
		{name: "device binding as PrintableString", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDDeviceBinding, Value: must(asn1.Marshal(string(mp.DeviceID)))})), want: certs.ReasonUserProfile},
		{name: "device binding as the device's SPIFFE ID", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDDeviceBinding, Value: testca.UTF8String(certs.DeviceURI(td, mp.DeviceID).String())})), want: certs.ReasonUserProfile},
		{name: "device binding with trailing bytes", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDDeviceBinding, Value: append(testca.UTF8String(string(mp.DeviceID)), 0)})), want: certs.ReasonUserProfile},
		{name: "groups as PrintableStrings", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDGroups, Value: must(asn1.Marshal([]string{"eng"}))})), want: certs.ReasonUserProfile},
		{name: "groups not a SEQUENCE", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDGroups, Value: testca.UTF8String("eng")})), want: certs.ReasonUserProfile},
		{name: "group with a control character", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDGroups, Value: utf8Seq("eng", "ad\x1bmin")})), want: certs.ReasonUserProfile},
		{name: "group with a bidirectional override", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDGroups, Value: utf8Seq("nimda\u202e")})), want: certs.ReasonUserProfile},
		{name: "duplicated group", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDGroups, Value: utf8Seq("eng", "eng")})), want: certs.ReasonUserProfile},
		{name: "too many groups", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDGroups, Value: utf8Seq(many...)})), want: certs.ReasonUserProfile},
		// x509 refuses an unknown critical extension before certmesh reads it.
		{name: "critical groups extension", bundle: issue(testca.WithExtension(pkix.Extension{Id: certs.OIDGroups, Critical: true, Value: utf8Seq("eng")})), want: certs.ReasonUserUntrusted},

		// Key usage.
		{name: "CA certificate as user certificate", bundle: issue(testca.WithTemplate(func(c *x509.Certificate) {
			c.IsCA, c.BasicConstraintsValid, c.KeyUsage = true, true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature
		})), want: certs.ReasonUserKeyUsage},
		{name: "server-only EKU", bundle: issue(testca.WithTemplate(func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })), want: certs.ReasonUserKeyUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := tt.at
			if at.IsZero() {
				at = now
			}
			id, err := verifyWire(tt.bundle(t), ca.Roots(), at)
			if err != nil {
				t.Fatalf("Verify failed (%v): a bad user certificate must not cost the machine its identity", err)
			}
			if id.User != nil {
				t.Fatalf("accepted user %+v; want rejection %q", id.User, tt.want)
			}
			if id.UserRejected == nil {
				t.Fatalf("no user rejection recorded; want %q", tt.want)
			}
			if got := id.UserRejected.Reason; got != tt.want {
				t.Fatalf("reason %q (%v), want %q", got, id.UserRejected, tt.want)
			}
			if certs.ReasonOf(id.UserError()) != tt.want || !strings.HasPrefix(string(tt.want), "user-") {
				t.Errorf("UserError %v", id.UserError())
			}
			if id.DeviceID != baseline.DeviceID || id.WireGuardKey != baseline.WireGuardKey || !slices.Equal(id.Addresses, baseline.Addresses) || id.Serial != baseline.Serial {
				t.Errorf("machine identity %+v, want %+v", id, baseline)
			}
			if got, want := id.DisplayName(), "laptop (tag:dev)"; got != want {
				t.Errorf("DisplayName %q, want %q", got, want)
			}
			if !id.NextExpiry().Equal(baseline.NotAfter) {
				t.Errorf("NextExpiry %s, want the machine's %s", id.NextExpiry(), baseline.NotAfter)
			}
		})
	}
}

// wire returns a fixed bundle.
func wire(w certs.WireBundle) func(*testing.T) certs.WireBundle {
	return func(*testing.T) certs.WireBundle { return w }
}

func TestVerifyUserAccepts(t *testing.T) {
	ca := testca.New(t, td)
	machine, _ := ca.IssueMachine(t, ca.NewProfile(t, "laptop"))
	b := ca.IssueUser(t, machine, testca.WithGroups("eng"))
	// A second intermediate of the same root, as after a rotation.
	rotated, err := certs.NewIntermediate(ca.Root(), td, testca.DefaultOverlays, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	fromRotated := ca.IssueUser(t, machine, testca.WithIssuer(rotated))
	tests := []struct {
		name   string
		bundle certs.Bundle
		at     time.Time
	}{
		{"just issued", b, time.Now()},
		{"at its NotAfter", b, b.User.NotAfter},
		{"at its NotBefore", b, b.User.NotBefore},
		{"issued by another intermediate of our root", fromRotated, time.Now()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := verifyWire(tt.bundle.Wire(), ca.Roots(), tt.at)
			if err != nil {
				t.Fatal(err)
			}
			if id.User == nil || id.UserRejected != nil {
				t.Fatalf("user rejected: %v", id.UserRejected)
			}
			if id.User.Serial != tt.bundle.User.SerialNumber.Text(16) {
				t.Errorf("serial %s, want %x", id.User.Serial, tt.bundle.User.SerialNumber)
			}
		})
	}

	// A machine certificate that fails still fails, whatever the user.
	expired, _ := ca.IssueMachine(t, ca.NewProfile(t, "old"), testca.WithValidity(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)))
	if _, err := certs.Verify(ca.IssueUser(t, expired), ca.Roots(), time.Now()); certs.ReasonOf(err) != certs.ReasonExpired {
		t.Errorf("expired machine with a valid user: %v, want %q", err, certs.ReasonExpired)
	}
}

func TestDisplayName(t *testing.T) {
	for _, tt := range []struct {
		id   certs.Identity
		want string
	}{
		{certs.Identity{Hostname: "laptop"}, "laptop"},
		{certs.Identity{Hostname: "db1", Tags: []certs.Tag{"db", "prod"}}, "db1 (tag:db, tag:prod)"},
		{certs.Identity{Hostname: "laptop", Tags: []certs.Tag{"dev"}, User: &certs.UserIdentity{Email: "alice@corp.example"}}, "alice@corp.example on laptop"},
		{certs.Identity{Hostname: "laptop", UserRejected: &certs.RejectError{Reason: certs.ReasonUserExpired}}, "laptop"},
	} {
		if got := tt.id.DisplayName(); got != tt.want {
			t.Errorf("DisplayName() = %q, want %q", got, tt.want)
		}
	}
	var none certs.Identity
	if none.UserError() != nil || none.User.InGroup("x") {
		t.Error("an identity without user has a user error or groups")
	}
}

func TestBundleWithUserOnTheWire(t *testing.T) {
	ca := testca.New(t, td)
	machine, _ := ca.IssueMachine(t, ca.NewProfile(t, "laptop"))
	inter := ca.Intermediate().Cert.Raw

	// Without a user, the encoding is what it was before user certificates.
	js, err := json.Marshal(machine.Wire())
	if err != nil {
		t.Fatal(err)
	}
	old, err := json.Marshal(struct {
		Machine       []byte   `json:"machine"`
		Intermediates [][]byte `json:"intermediates,omitempty"`
	}{machine.Machine.Raw, [][]byte{inter}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(js, old) {
		t.Errorf("bundle without a user encodes as\n%s\nwant\n%s", js, old)
	}
	var w certs.WireBundle
	if err := json.Unmarshal(old, &w); err != nil || w.User != nil {
		t.Fatalf("old encoding decodes to user %x, %v", w.User, err)
	}
	if b, err := certs.ParseBundle(w); err != nil || b.User != nil {
		t.Fatalf("old encoding parses to user %v, %v", b.User, err)
	}

	// With one, it round-trips through JSON.
	b := ca.IssueUser(t, machine)
	js, err = json.Marshal(b.Wire())
	if err != nil {
		t.Fatal(err)
	}
	w = certs.WireBundle{}
	if err := json.Unmarshal(js, &w); err != nil {
		t.Fatal(err)
	}
	if id, err := verifyWire(w, ca.Roots(), time.Now()); err != nil || id.User == nil {
		t.Fatalf("JSON round trip: %v, rejected %v", err, id.UserRejected)
	}

	// The user certificate counts towards MaxBundleCerts.
	full := certs.WireBundle{Machine: machine.Machine.Raw, User: b.User.Raw}
	for range certs.MaxBundleCerts - 2 {
		full.Intermediates = append(full.Intermediates, inter)
	}
	if _, err := verifyWire(full, ca.Roots(), time.Now()); err != nil {
		t.Errorf("bundle of MaxBundleCerts certificates with a user: %v", err)
	}
	full.Intermediates = append(full.Intermediates, inter)
	if _, err := certs.ParseBundle(full); certs.ReasonOf(err) != certs.ReasonMalformed {
		t.Errorf("bundle of MaxBundleCerts+1 certificates with a user: %v, want malformed", err)
	}

	// A user certificate that does not parse makes the bundle malformed.
	dup := ca.IssueUserWire(t, machine, testca.WithDuplicateExtension(certs.OIDDeviceBinding))
	for name, user := range map[string][]byte{
		"garbage":              []byte("not a certificate"),
		"truncated":            b.User.Raw[:len(b.User.Raw)/2],
		"trailing bytes":       append(bytes.Clone(b.User.Raw), 0),
		"empty":                {},
		"oversized":            make([]byte, certs.MaxCertSize+1),
		"duplicated extension": dup.User,
	} {
		w := machine.Wire()
		w.User = user
		if _, err := certs.ParseBundle(w); certs.ReasonOf(err) != certs.ReasonMalformed {
			t.Errorf("%s user certificate: %v, want malformed", name, err)
		}
	}
}
