package certs_test

import (
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

// TestVerifyWithCRL: Verify is where revocation is decided. A revoked
// machine certificate is refused; a revoked user certificate is refused
// beside a machine identity that stands; a CRL of another issuer, even
// listing the same serial, revokes nothing.
func TestVerifyWithCRL(t *testing.T) {
	ca := testca.New(t, td)
	now := time.Now()
	machine, _ := ca.IssueMachine(t, ca.NewProfile(t, "laptop"))
	withUser := ca.IssueUser(t, machine)
	other, _ := ca.IssueMachine(t, ca.NewProfile(t, "other"))
	crlOf := func(t *testing.T, issuer *testca.CA, revoked ...*x509.Certificate) *certs.CRL {
		t.Helper()
		var entries []certs.RevokedCert
		for _, c := range revoked {
			entries = append(entries, testca.Revoked(c, certs.RevokeKeyCompromise))
		}
		der := issuer.IssueCRL(t, 7, now.Add(-time.Minute), now.Add(5*time.Minute), entries...)
		crl, err := certs.VerifyCRL(der, issuer.Roots(), []*x509.Certificate{issuer.Intermediate().Cert}, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		return crl
	}

	t.Run("machine revoked", func(t *testing.T) {
		crl := crlOf(t, ca, machine.Machine)
		id, err := certs.Verify(withUser, ca.Roots(), crl, now)
		if certs.ReasonOf(err) != certs.ReasonRevoked || !strings.Contains(err.Error(), "CRL 7") {
			t.Fatalf("Verify = %v, want %s naming the CRL", err, certs.ReasonRevoked)
		}
		if id.DeviceID != "" || id.User != nil || !id.WireGuardKey.IsZero() {
			t.Errorf("a revoked bundle still yields identity %+v", id)
		}
		if _, err := certs.Verify(other, ca.Roots(), crl, now); err != nil {
			t.Errorf("a certificate the CRL does not list: %v", err)
		}
		if _, err := certs.Verify(withUser, ca.Roots(), nil, now); err != nil {
			t.Errorf("without a CRL: %v", err)
		}
	})
	t.Run("user revoked", func(t *testing.T) {
		crl := crlOf(t, ca, withUser.User)
		id, err := certs.Verify(withUser, ca.Roots(), crl, now)
		if err != nil {
			t.Fatalf("the machine must stand when only its user is revoked: %v", err)
		}
		if id.User != nil || id.UserRejected == nil || id.UserRejected.Reason != certs.ReasonUserRevoked {
			t.Fatalf("user %+v, rejection %v; want the user refused as %s", id.User, id.UserRejected, certs.ReasonUserRevoked)
		}
		if id.DeviceID == "" {
			t.Error("the machine identity is missing")
		}
	})
	t.Run("another issuer's CRL", func(t *testing.T) {
		// Another CA whose CRL lists this certificate's serial: it does
		// not speak for our intermediate.
		evil := testca.New(t, td)
		entries := []certs.RevokedCert{{Serial: new(big.Int).Set(machine.Machine.SerialNumber), RevokedAt: now.Add(-time.Minute)}}
		der := evil.IssueCRL(t, 9, now.Add(-time.Minute), now.Add(5*time.Minute), entries...)
		crl, err := certs.VerifyCRL(der, evil.Roots(), []*x509.Certificate{evil.Intermediate().Cert}, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !crl.IsRevoked(machine.Machine.SerialNumber) {
			t.Fatal("the fixture is wrong: the serial is not listed")
		}
		if _, err := certs.Verify(machine, ca.Roots(), crl, now); err != nil {
			t.Errorf("a CRL of another issuer revoked our certificate: %v", err)
		}
	})
}
