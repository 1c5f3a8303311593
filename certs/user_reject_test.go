package certs_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

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
	baseline, err := certs.Verify(machine, ca.Roots(), nil, now)
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
