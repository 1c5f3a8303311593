package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/wire"
)

// An agent whose enrollment committed but whose answer was lost (the CA
// was killed before answering, the connection dropped) enrolls again with
// the same token and the same keys: it gets the device and certificate
// already issued, and nothing new is issued. The token stays spent for
// anyone else, for other keys, and once the device is revoked.
func TestEnrollAgainAfterLostAnswer(t *testing.T) {
	e := newTestEnv(t)
	d := newTestDevice(t, "laptop")
	tok := e.Token(t)
	first := e.Enroll(t, d, tok)
	logged, err := ca.LogEntries(e.CA)
	if err != nil {
		t.Fatal(err)
	}

	st, body := e.Post(t, e.Client(t), wire.PathEnroll, d.EnrollRequest(t, tok, e.Nonce(t)))
	again := d.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
	if again.DeviceID != first.DeviceID || again.Serial != first.Serial {
		t.Fatalf("enrolling again got device %s serial %s, want the one already issued (%s, %s)", again.DeviceID, again.Serial, first.DeviceID, first.Serial)
	}
	if n := len(e.Devices(t)); n != 1 {
		t.Fatalf("%d devices after enrolling again, want 1", n)
	}
	if now, _ := ca.LogEntries(e.CA); len(now) != len(logged) {
		t.Fatalf("enrolling again logged %d new entries, want none", len(now)-len(logged))
	}

	// The same WireGuard key with another device key is someone else.
	other := *d
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other.Key = key
	st, body = e.Post(t, e.Client(t), wire.PathEnroll, other.EnrollRequest(t, tok, e.Nonce(t)))
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeTokenUsed, "already used")

	// A revoked device does not come back with its token.
	if _, err := e.CA.Revoke(t.Context(), d.ID); err != nil {
		t.Fatal(err)
	}
	st, body = e.Post(t, e.Client(t), wire.PathEnroll, d.EnrollRequest(t, tok, e.Nonce(t)))
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeTokenUsed, "already used")
}
