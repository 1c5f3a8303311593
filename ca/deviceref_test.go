package ca_test

import (
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
)

// devices revoke by hostname with --reason keyCompromise puts reason code
// 1 in the device's CRL entry; a hostname two active devices share, an
// unknown reason and a reason no device revocation may give are refused
// and revoke nothing.
func TestRevokeReasonByHostname(t *testing.T) {
	e := newTestEnv(t)
	stolen := e.Enroll(t, newTestDevice(t, "laptop-7"), e.Token(t))
	dupA := e.Enroll(t, newTestDevice(t, "kiosk"), e.Token(t))
	dupB := e.Enroll(t, newTestDevice(t, "kiosk"), e.Token(t))

	for _, bad := range []struct{ ref, body, msg string }{
		{"kiosk", `{"reason":"keyCompromise"}`, `hostname "kiosk" names 2 devices, give the ID: `},
		{"laptop-7", `{"reason":"stolen"}`, `revocation reason "stolen": want one of unspecified, keyCompromise`},
		{"laptop-7", `{"reason":"cACompromise"}`, `revocation reason "cACompromise"`},
		{"nosuch", ``, "no device nosuch (neither an ID nor a hostname)"},
	} {
		st, body := admin(t, e, http.MethodPost, ca.AdminPathDevices+"/"+bad.ref+"/revoke", bad.body)
		if msg := strings.ReplaceAll(string(body), `\"`, `"`); st == http.StatusOK || !strings.Contains(msg, bad.msg) ||
			bad.ref == "kiosk" && (!strings.Contains(msg, string(dupA.DeviceID)) || !strings.Contains(msg, string(dupB.DeviceID))) {
			t.Errorf("revoke %s %s: %d %s, want %q", bad.ref, bad.body, st, body, bad.msg)
		}
	}
	for _, d := range e.Devices(t) {
		if d.State != store.DeviceActive {
			t.Fatalf("a refused revocation revoked %s", d.ID)
		}
	}
	if crl := crlEntries(t, e); len(crl) != 0 {
		t.Fatalf("a refused revocation put %d CRL entries", len(crl))
	}

	st, body := admin(t, e, http.MethodPost, ca.AdminPathDevices+"/LAPTOP-7/revoke", `{"reason":"keyCompromise"}`)
	dev := decodeOK[store.Device](t, st, body)
	if dev.ID != stolen.DeviceID || dev.State != store.DeviceRevoked {
		t.Fatalf("revoke by hostname revoked %+v", dev)
	}
	crl := crlEntries(t, e)
	if len(crl) != 1 || crl[0].ReasonCode != certs.RevokeKeyCompromise || crl[0].SerialNumber.Text(16) != deviceSerial(t, e, stolen.DeviceID) {
		t.Fatalf("CRL entries %+v, want the stolen device's serial with keyCompromise (1)", crl)
	}
	// With no body the reason stays cessationOfOperation (old clients).
	st, body = admin(t, e, http.MethodPost, ca.AdminPathDevices+"/"+string(dupB.DeviceID)+"/revoke", "")
	decodeOK[store.Device](t, st, body)
	for _, r := range crlEntries(t, e) {
		if r.SerialNumber.Text(16) == deviceSerial(t, e, dupB.DeviceID) && r.ReasonCode != certs.RevokeCessationOfOperation {
			t.Fatalf("revoke without a reason: CRL reason %d", r.ReasonCode)
		}
	}
	// Of two devices named kiosk, one is active now: the name resolves.
	st, body = admin(t, e, http.MethodGet, ca.AdminPathDevices+"/kiosk", "")
	if got := decodeOK[store.Device](t, st, body); got.ID != dupA.DeviceID {
		t.Fatalf("kiosk resolved to %s, want the active %s", got.ID, dupA.DeviceID)
	}
}

// crlEntries are the entries of the CA's current CRL.
func crlEntries(t *testing.T, e *testEnv) []x509.RevocationListEntry {
	t.Helper()
	rl, err := x509.ParseRevocationList(e.CA.CRL())
	if err != nil {
		t.Fatalf("parsing CRL: %v", err)
	}
	return rl.RevokedCertificateEntries
}

// deviceSerial is the serial (hex) of a device's current certificate.
func deviceSerial(t *testing.T, e *testEnv, id certs.DeviceID) string {
	t.Helper()
	for _, d := range e.Devices(t) {
		if d.ID == id {
			return d.Serial
		}
	}
	t.Fatalf("no device %s", id)
	return ""
}
