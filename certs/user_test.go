package certs_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/x509util"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

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

			id, err := certs.Verify(b, ca.Roots(), nil, now)
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
