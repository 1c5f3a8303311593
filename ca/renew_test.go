package ca_test

import (
	"net/http"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// A renewal the CA committed but whose answer the device never saved (the
// network cut, the agent killed) must not lock the device out: asked again
// with the certificate the device still holds, the CA answers with the
// certificate already issued, or with a fresh one once the keys differ.
func TestRenewalAnswerLost(t *testing.T) {
	e := newTestEnv(t)
	d := newTestDevice(t, "laptop")
	first := e.Enroll(t, d, e.Token(t))

	// Renewal 1 commits; its answer is thrown away.
	st, body := e.Renew(t, d, d.RenewRequest(t, e.Nonce(t)))
	lost := decodeOK[wire.CertificateResponse](t, st, body)
	lostSerial := serialOf(t, lost)
	if dv := deviceByID(t, e, d.ID); dv.Serial != lostSerial || lostSerial == first.Serial {
		t.Fatalf("device record holds %s after the renewal, want the lost answer's %s", dv.Serial, lostSerial)
	}

	// The device asks again with the certificate it still holds.
	st, body = e.Renew(t, d, d.RenewRequest(t, e.Nonce(t)))
	again := d.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
	if again.Serial != lostSerial {
		t.Fatalf("repeated renewal got %s, want the certificate already issued, %s", again.Serial, lostSerial)
	}
	if dv := deviceByID(t, e, d.ID); dv.Serial != lostSerial {
		t.Fatalf("device record holds %s after the repeated renewal, want %s", dv.Serial, lostSerial)
	}
	// From it, renewal goes on as usual.
	st, body = e.Renew(t, d, d.RenewRequest(t, e.Nonce(t)))
	next := d.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
	if next.Serial == lostSerial {
		t.Fatal("renewal with the current certificate returned it again")
	}

	// Lost again, and the device asks with another WireGuard key: the
	// certificate issued does not carry it, so a fresh one is issued.
	st, _ = e.Renew(t, d, d.RenewRequest(t, e.Nonce(t)))
	if st != http.StatusOK {
		t.Fatalf("renewal: %d", st)
	}
	d.RotateWireGuardKey(t)
	st, body = e.Renew(t, d, d.RenewRequest(t, e.Nonce(t)))
	rotated := d.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
	if rotated.WireGuardKey != d.WGPub || rotated.Serial == next.Serial {
		t.Fatalf("repeated renewal with a new WireGuard key: %+v", rotated)
	}
	if dv := deviceByID(t, e, d.ID); dv.Serial != rotated.Serial || dv.WireGuardKey != d.WGPub {
		t.Fatalf("device record %+v, want serial %s and the new WireGuard key", dv, rotated.Serial)
	}
}

// The way back for a lost answer is no way back for a revoked device: none
// of its certificates, current or superseded, renews.
func TestRenewalAnswerLostRevoked(t *testing.T) {
	e := newTestEnv(t)
	d := newTestDevice(t, "laptop")
	e.Enroll(t, d, e.Token(t))
	superseded := d.TLSCertificate(t)
	st, body := e.Renew(t, d, d.RenewRequest(t, e.Nonce(t)))
	d.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
	if _, err := e.CA.Revoke(t.Context(), d.ID); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string][]byte{"current": nil, "superseded": superseded.Certificate[0]} {
		cl := e.Client(t, d.TLSCertificate(t))
		if c != nil {
			cl = e.Client(t, superseded)
		}
		st, body := e.Post(t, cl, wire.PathRenew, d.RenewRequest(t, e.Nonce(t)))
		wantRefusal(t, st, body, http.StatusForbidden, ca.CodeForbidden, "revoked")
		t.Logf("%s certificate of the revoked device refused", name)
	}
	if dv := deviceByID(t, e, d.ID); dv.State != "revoked" {
		t.Fatalf("device state %s", dv.State)
	}
}

// serialOf is the serial of the machine certificate in resp, as the
// device records hold it.
func serialOf(t testing.TB, resp wire.CertificateResponse) string {
	t.Helper()
	b, err := certs.ParseBundle(resp.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	return b.Machine.SerialNumber.Text(16)
}
