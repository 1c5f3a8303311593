package testca_test

import (
	"crypto"
	"crypto/x509"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

func TestIssueMachineVerifies(t *testing.T) {
	ca := testca.New(t, "corp.example")
	p := ca.NewProfile(t, "alpha")
	b, key := ca.IssueMachine(t, p)
	id, err := certs.Verify(b, ca.Roots(), nil, time.Now())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.DeviceID != p.DeviceID || id.WireGuardKey != p.WireGuardKey {
		t.Errorf("identity %+v does not match profile %+v", id, p)
	}
	if !b.Machine.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		t.Error("certificate key is not the returned device key")
	}

	// The wire form parses to the same bundle.
	w, _ := ca.IssueMachineWire(t, p)
	pb, err := certs.ParseBundle(w)
	if err != nil {
		t.Fatalf("ParseBundle: %v", err)
	}
	if _, err := certs.Verify(pb, ca.Roots(), nil, time.Now()); err != nil {
		t.Fatalf("Verify wire bundle: %v", err)
	}
}

func TestNewProfileAllocatesDistinctAddresses(t *testing.T) {
	ca := testca.New(t, "corp.example")
	a, b := ca.NewProfile(t, "a"), ca.NewProfile(t, "b")
	want := [][]string{{"100.64.0.1", "fd7a:c3e7:5e00::1"}, {"100.64.0.2", "fd7a:c3e7:5e00::2"}}
	for i, p := range []certs.MachineProfile{a, b} {
		for j, addr := range p.Addresses {
			if addr.String() != want[i][j] {
				t.Errorf("profile %d address %d = %s, want %s", i, j, addr, want[i][j])
			}
		}
	}
	if a.DeviceID == b.DeviceID || a.WireGuardKey == b.WireGuardKey {
		t.Error("profiles share a device ID or WireGuard key")
	}
}

func TestCustomOverlays(t *testing.T) {
	ca := testca.New(t, "lab.example", netip.MustParsePrefix("10.99.0.0/16"))
	p := ca.NewProfile(t, "host")
	if len(p.Addresses) != 1 || p.Addresses[0] != netip.MustParseAddr("10.99.0.1") {
		t.Fatalf("addresses %v, want [10.99.0.1]", p.Addresses)
	}
	b, _ := ca.IssueMachine(t, p)
	if _, err := certs.Verify(b, ca.Roots(), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestOptions(t *testing.T) {
	ca := testca.New(t, "corp.example")
	p := ca.NewProfile(t, "host")
	nb, na := time.Now().Add(-2*time.Hour).Truncate(time.Second), time.Now().Add(-time.Hour).Truncate(time.Second)
	b, _ := ca.IssueMachine(t, p,
		testca.WithValidity(nb, na),
		testca.WithIPs(netip.MustParseAddr("100.64.9.9")),
		testca.WithDNSNames("x.corp.example", "y.corp.example"),
		testca.WithURIs(),
		testca.WithoutExtension(certs.OIDAttestation),
		testca.WithTemplate(func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }),
	)
	m := b.Machine
	if !m.NotBefore.Equal(nb) || !m.NotAfter.Equal(na) {
		t.Errorf("validity %s..%s, want %s..%s", m.NotBefore, m.NotAfter, nb, na)
	}
	if len(m.IPAddresses) != 1 || m.IPAddresses[0].String() != "100.64.9.9" {
		t.Errorf("IPs %v", m.IPAddresses)
	}
	if len(m.DNSNames) != 2 || len(m.URIs) != 0 {
		t.Errorf("DNS %v URIs %v", m.DNSNames, m.URIs)
	}
	for _, e := range m.Extensions {
		if e.Id.Equal(certs.OIDAttestation) {
			t.Error("attestation extension not dropped")
		}
	}
	if len(m.ExtKeyUsage) != 1 || m.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("EKU %v", m.ExtKeyUsage)
	}

	self, _ := ca.IssueMachine(t, p, testca.WithSelfSigned())
	if len(self.Intermediates) != 0 || self.Machine.CheckSignature(self.Machine.SignatureAlgorithm, self.Machine.RawTBSCertificate, self.Machine.Signature) != nil {
		t.Error("WithSelfSigned: not signed by its own key, or carries intermediates")
	}

	other := testca.New(t, "corp.example")
	ob, _ := ca.IssueMachine(t, p, testca.WithIssuer(other.Intermediate()))
	if ob.Machine.CheckSignatureFrom(other.Intermediate().Cert) != nil || ob.Intermediates[0] != other.Intermediate().Cert {
		t.Error("WithIssuer: not signed by, or not bundled with, the given issuer")
	}

	w, _ := ca.IssueMachineWire(t, p, testca.WithDuplicateExtension(certs.OIDWireGuardKey))
	if _, err := certs.ParseBundle(w); certs.ReasonOf(err) != certs.ReasonMalformed {
		t.Errorf("duplicated extension: ParseBundle err = %v, want malformed", err)
	}
}

func TestFromKeyPairs(t *testing.T) {
	orig := testca.New(t, "corp.example")
	ca := testca.FromKeyPairs(t, "corp.example", &certs.KeyPair{Cert: orig.Root().Cert}, orig.Intermediate())
	b, _ := ca.IssueMachine(t, ca.NewProfile(t, "host"))
	if _, err := certs.Verify(b, orig.Roots(), nil, time.Now()); err != nil {
		t.Fatalf("certificate issued through FromKeyPairs does not verify against the original root: %v", err)
	}
}

func TestIssueUserVerifies(t *testing.T) {
	ca := testca.New(t, "corp.example")
	machine, key := ca.IssueMachine(t, ca.NewProfile(t, "laptop"))
	b := ca.IssueUser(t, machine, testca.WithEmail("alice@example.com"), testca.WithGroups("eng", "ops"))
	if b.Machine != machine.Machine || len(b.Intermediates) != 1 || b.User == nil {
		t.Fatalf("bundle %+v: want the machine bundle plus a user certificate", b)
	}
	if !b.User.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		t.Error("user certificate key is not the device key")
	}
	id, err := certs.Verify(b, ca.Roots(), nil, time.Now())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.User == nil {
		t.Fatalf("user rejected: %v", id.UserRejected)
	}
	if id.User.Email != "alice@example.com" || len(id.User.Groups) != 2 || id.User.Groups[0] != "eng" || id.User.Groups[1] != "ops" {
		t.Errorf("user %+v", id.User)
	}
	if d := b.User.NotAfter.Sub(b.User.NotBefore); d != testca.UserLifetime+time.Minute {
		t.Errorf("user certificate lives %s", d)
	}

	// Two users of a CA are different people.
	u1, u2 := ca.NewUserProfile(t, machine.Machine), ca.NewUserProfile(t, machine.Machine)
	if u1.UserID == u2.UserID || u1.Email == u2.Email {
		t.Error("NewUserProfile repeats a user")
	}

	// The wire form parses and verifies too.
	pb, err := certs.ParseBundle(ca.IssueUserWire(t, machine))
	if err != nil {
		t.Fatalf("ParseBundle: %v", err)
	}
	if id, err := certs.Verify(pb, ca.Roots(), nil, time.Now()); err != nil || id.User == nil {
		t.Fatalf("Verify wire bundle: %v, user rejected: %v", err, id.UserRejected)
	}
}

func TestUserOptions(t *testing.T) {
	ca := testca.New(t, "corp.example")
	other := testca.New(t, "corp.example")
	machine, _ := ca.IssueMachine(t, ca.NewProfile(t, "laptop"))
	stranger := ca.NewProfile(t, "stranger")
	wrongKey, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tests := []struct {
		name string
		opts []testca.Option
		want certs.Reason
	}{
		{"another subject key", []testca.Option{testca.WithDeviceKey(wrongKey)}, certs.ReasonUserKeyMismatch},
		{"another device's binding", []testca.Option{testca.WithBoundDevice(stranger.DeviceID)}, certs.ReasonUserDeviceMismatch},
		{"another CA", []testca.Option{testca.WithIssuer(other.Intermediate())}, certs.ReasonUserUntrusted},
		{"self-signed", []testca.Option{testca.WithSelfSigned()}, certs.ReasonUserUntrusted},
		{"expired", []testca.Option{testca.WithValidity(now.Add(-2*time.Hour), now.Add(-time.Hour))}, certs.ReasonUserExpired},
		{"two emails", []testca.Option{testca.WithEmails("a@example.com", "b@example.com")}, certs.ReasonUserProfile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ca.IssueUser(t, machine, tt.opts...)
			id, err := certs.Verify(b, ca.Roots(), nil, now)
			if err != nil {
				t.Fatalf("Verify: %v (the machine must stand)", err)
			}
			if id.User != nil || id.UserRejected == nil || id.UserRejected.Reason != tt.want {
				t.Fatalf("user %+v rejected %v, want reason %q", id.User, id.UserRejected, tt.want)
			}
		})
	}

	b := ca.IssueUser(t, machine, testca.WithIssuer(other.Intermediate()))
	if len(b.Intermediates) != 2 || !b.Intermediates[1].Equal(other.Intermediate().Cert) || b.User.CheckSignatureFrom(other.Intermediate().Cert) != nil {
		t.Error("WithIssuer: user certificate not signed by, or bundled with, the other issuer")
	}
	b = ca.IssueUser(t, machine, testca.WithIntermediates())
	if len(b.Intermediates) != 0 {
		t.Error("WithIntermediates(): the bundle still carries intermediates")
	}
}

func TestIssueCRL(t *testing.T) {
	ca := testca.New(t, "corp.example")
	b, key := ca.IssueMachine(t, ca.NewProfile(t, "lost"))
	now := time.Now()
	der := ca.IssueCRL(t, 3, now.Add(-time.Minute), now.Add(5*time.Minute), testca.Revoked(b.Machine, certs.RevokeKeyCompromise))
	inters := []*x509.Certificate{ca.Intermediate().Cert}
	crl, err := certs.VerifyCRL(der, ca.Roots(), inters, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if crl.Number.Int64() != 3 || !crl.IsRevoked(b.Machine.SerialNumber) || !crl.Covers(b.Machine) {
		t.Fatalf("CRL %v: revoked %v covers %v", crl.Number, crl.IsRevoked(b.Machine.SerialNumber), crl.Covers(b.Machine))
	}

	// SignCRL: with the intermediate's name and key it is as good as
	// IssueCRL; with a leaf's, a leaf's CRL.
	tmpl := testca.CRLTemplate(4, now.Add(-time.Minute), now.Add(5*time.Minute), testca.Revoked(b.Machine, 0))
	if _, err := certs.VerifyCRL(testca.SignCRL(t, ca.Intermediate().Cert, ca.Intermediate().Key, tmpl), ca.Roots(), inters, now, crl); err != nil {
		t.Errorf("SignCRL by the intermediate: %v", err)
	}
	leafCRL := testca.SignCRL(t, b.Machine, key, tmpl)
	if _, err := certs.VerifyCRL(leafCRL, ca.Roots(), append(inters, b.Machine), now, crl); certs.ReasonOf(err) != certs.ReasonCRLSignedByLeaf {
		t.Errorf("SignCRL by a leaf: %v", err)
	}
}

func TestIssueIntermediate(t *testing.T) {
	ca := testca.New(t, "corp.example")
	second := ca.IssueIntermediate(t)
	c := second.Cert
	if !c.IsCA || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || c.MaxPathLen != 0 || !c.MaxPathLenZero || len(c.SubjectKeyId) == 0 {
		t.Fatalf("intermediate: CA %v usage %b path len %d/%v SKID %x", c.IsCA, c.KeyUsage, c.MaxPathLen, c.MaxPathLenZero, c.SubjectKeyId)
	}
	if c.Subject.String() == ca.Intermediate().Cert.Subject.String() {
		t.Errorf("same subject as the CA's intermediate: %v", c.Subject)
	}
	// It issues machine certificates peers accept, within the same name
	// constraints.
	b, _ := ca.IssueMachine(t, ca.NewProfile(t, "rotated"), testca.WithIssuer(second))
	if _, err := certs.Verify(b, ca.Roots(), nil, time.Now()); err != nil {
		t.Fatalf("machine certificate of the second intermediate: %v", err)
	}
	outside := ca.NewProfile(t, "outside")
	outside.Addresses[0] = netip.MustParseAddr("10.1.2.3")
	b, _ = ca.IssueMachine(t, outside, testca.WithIssuer(second))
	if _, err := certs.Verify(b, ca.Roots(), nil, time.Now()); certs.ReasonOf(err) != certs.ReasonNameConstraints {
		t.Errorf("outside the overlay: %v", err)
	}
	noCRL := ca.IssueIntermediate(t, testca.WithTemplate(func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageCertSign }))
	if noCRL.Cert.KeyUsage&x509.KeyUsageCRLSign != 0 {
		t.Error("WithTemplate did not apply")
	}
}
