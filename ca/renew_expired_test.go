package ca_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/wire"
)

// RenewExpiredRequest is a correct renewal-after-expiry request for d's
// current certificate.
func (d *testDevice) RenewExpiredRequest(t testing.TB, nonce string) wire.RenewExpiredRequest {
	t.Helper()
	csr := d.CSR(t)
	der := d.Resp.Bundle.Machine
	return wire.RenewExpiredRequest{Certificate: der, CSR: csr, WireGuardKey: d.WGPub, Nonce: nonce,
		Proof: d.Proof(t, nonce, csr), DeviceProof: deviceProof(t, d.Key, nonce, der, d.WGPub)}
}

func deviceProof(t testing.TB, key crypto.Signer, nonce string, der []byte, wg [32]byte) []byte {
	t.Helper()
	h := sha256.Sum256(wire.DeviceProofMessage(nonce, der, wg))
	sig, err := key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// expireBy moves the CA's clock to by past d's certificate's expiry.
func expireBy(t testing.TB, e *testEnv, d *testDevice, by time.Duration) {
	t.Helper()
	e.Clock.Set(d.Certificate(t).NotAfter.Add(by).Sub(time.Now()))
}

// A certificate that expired (the CA was down longer than its life)
// renews with the device's keys alone, within renew_after_expiry.
func TestRenewalAfterExpiry(t *testing.T) {
	e := newTestEnv(t)
	d := newTestDevice(t, "laptop")
	first := e.Enroll(t, d, e.Token(t))
	expireBy(t, e, d, time.Hour)

	// Every part of the proof is checked; none of these changes anything.
	other := newTestDevice(t, "thief")
	n := e.Nonce(t)
	for name, tc := range map[string]struct {
		edit func(r *wire.RenewExpiredRequest)
		code ca.Code
	}{
		"device proof by another key": {func(r *wire.RenewExpiredRequest) {
			r.DeviceProof = deviceProof(t, other.Key, r.Nonce, r.Certificate, r.WireGuardKey)
		}, ca.CodeBadProof},
		"device proof over another nonce": {func(r *wire.RenewExpiredRequest) {
			r.DeviceProof = deviceProof(t, d.Key, "another", r.Certificate, r.WireGuardKey)
		}, ca.CodeBadProof},
		"device proof for another WireGuard key": {func(r *wire.RenewExpiredRequest) {
			r.WireGuardKey = other.WGPub
			r.Proof = proofBy(t, other.wgPriv, r.Nonce, r.CSR)
		}, ca.CodeBadProof},
		"WireGuard proof by another key": {func(r *wire.RenewExpiredRequest) {
			r.Proof = proofBy(t, other.wgPriv, r.Nonce, r.CSR)
		}, ca.CodeBadProof},
		"another device key": {func(r *wire.RenewExpiredRequest) {
			r.CSR = other.CSR(t)
			r.Proof = d.Proof(t, r.Nonce, r.CSR)
		}, ca.CodeBadCSR},
		"no certificate": {func(r *wire.RenewExpiredRequest) { r.Certificate = nil }, ca.CodeBadRequest},
		"another certificate": {func(r *wire.RenewExpiredRequest) {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			r.Certificate = selfSigned(t, key)
		}, ca.CodeForbidden},
	} {
		req := d.RenewExpiredRequest(t, e.Nonce(t))
		tc.edit(&req)
		st, body := e.Post(t, e.Client(t), wire.PathRenewExpired, req)
		t.Log(name)
		status := http.StatusBadRequest
		if tc.code == ca.CodeForbidden {
			status = http.StatusForbidden
		}
		wantRefusal(t, st, body, status, tc.code)
	}
	if dv := deviceByID(t, e, d.ID); dv.Serial != first.Serial {
		t.Fatalf("a refused request changed the device record: serial %s, want %s", dv.Serial, first.Serial)
	}

	st, body := e.Post(t, e.Client(t), wire.PathRenewExpired, d.RenewExpiredRequest(t, n))
	renewed := d.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
	if renewed.DeviceID != first.DeviceID || renewed.Serial == first.Serial || !renewed.NotAfter.After(e.Clock.Now()) {
		t.Fatalf("renewed after expiry: %+v, want a fresh certificate of device %s", renewed, first.DeviceID)
	}
	if dv := deviceByID(t, e, d.ID); dv.Serial != renewed.Serial {
		t.Fatalf("device record holds %s, want %s", dv.Serial, renewed.Serial)
	}
	// The nonce is spent.
	st, body = e.Post(t, e.Client(t), wire.PathRenewExpired, d.RenewExpiredRequest(t, n))
	if st == http.StatusOK {
		t.Fatalf("a spent nonce renewed again: %s", body)
	}
}

// The way back is bounded: past renew_after_expiry (default 7 days, or as
// configured) the device must enroll again, and a revoked device never
// comes back.
func TestRenewalAfterExpiryBounded(t *testing.T) {
	e := newTestEnv(t)
	d := newTestDevice(t, "laptop")
	e.Enroll(t, d, e.Token(t))

	expireBy(t, e, d, ca.DefaultRenewAfterExpiry+time.Minute)
	st, body := e.Post(t, e.Client(t), wire.PathRenewExpired, d.RenewExpiredRequest(t, e.Nonce(t)))
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeForbidden, "renew_after_expiry")

	e.CA.Config().RenewAfterExpiry = ca.Duration(time.Hour)
	expireBy(t, e, d, 2*time.Hour)
	st, body = e.Post(t, e.Client(t), wire.PathRenewExpired, d.RenewExpiredRequest(t, e.Nonce(t)))
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeForbidden, "renew_after_expiry")

	// Revoked (after expiry, as an admin would on a lost laptop), inside
	// the window: refused.
	expireBy(t, e, d, 30*time.Minute)
	if _, err := e.CA.Revoke(t.Context(), d.ID); err != nil {
		t.Fatal(err)
	}
	st, body = e.Post(t, e.Client(t), wire.PathRenewExpired, d.RenewExpiredRequest(t, e.Nonce(t)))
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeForbidden, "revoked")
}

// selfSigned is a certificate no CA of ours issued.
func selfSigned(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
