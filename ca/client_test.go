package ca_test

// A small test client for the CA: it initialises a state directory, serves
// CA.Handler over real HTTPS configured like certmesh-server's listener, and
// plays devices that build CSRs, prove possession of their WireGuard key and
// post JSON the way an agent does.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/x25519"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/internal/wire"
)

const testTrustDomain = certs.TrustDomain("corp.example")

// testEnv is an initialised CA served over HTTPS.
type testEnv struct {
	Dir   string
	CA    *ca.CA
	Clock *testclock.Clock // the CA's
	Srv   *httptest.Server

	// nextIndex is the allocation index the next successful enrollment
	// must get: failures never consume one.
	nextIndex uint64
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// openTestCA initialises a fresh state directory and opens it, without a
// server.
func openTestCA(t testing.TB) *testEnv { return openTestCAWith(t, nil) }

// openTestCAWith is openTestCA with config.json changed by edit first.
func openTestCAWith(t testing.TB, edit func(*ca.Config)) *testEnv {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain, Store: testStore(t)}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if edit != nil {
		editConfig(t, dir, edit)
	}
	clk := &testclock.Clock{}
	c, err := ca.Open(dir, ca.Options{Logger: discardLogger(), Now: clk.Now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testEnv{Dir: dir, CA: c, Clock: clk, nextIndex: 1}
}

// editConfig changes the config.json of the state directory dir.
func editConfig(t testing.TB, dir string, edit func(*ca.Config)) {
	t.Helper()
	cfg, err := ca.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// newTestEnv also serves the CA's handler over HTTPS with the TLS settings
// of certmesh-server.
func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	return serve(t, openTestCA(t))
}

// serve serves e.CA over HTTPS like certmesh-server.
func serve(t testing.TB, e *testEnv) *testEnv {
	t.Helper()
	e.Srv = startTLS(t, e.CA.Handler(), nil, e.CA.Roots().Pool(), e.CA.GetCertificate)
	return e
}

// startTLS serves h over HTTPS like certmesh-server (on ln if not nil),
// until the test ends (before the CA's Close, registered earlier).
func startTLS(t testing.TB, h http.Handler, ln net.Listener, clientCAs *x509.CertPool, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.TLS = &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      clientCAs,
		GetCertificate: getCert,
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// Client returns an HTTPS client that trusts only the CA's roots and checks
// the server name agents check, presenting the given client certificates.
func (e *testEnv) Client(t testing.TB, clientCerts ...tls.Certificate) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      e.CA.Roots().Pool(),
		ServerName:   certs.ServerName(e.CA.Config().TrustDomain),
		Certificates: clientCerts,
		Time:         e.Clock.Now, // the CA renews its own certificate by its clock
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Post sends body (raw bytes, or a value marshalled to JSON) to path and
// returns the status and the response body.
func (e *testEnv) Post(t testing.TB, cl *http.Client, path string, body any) (int, []byte) {
	t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatalf("marshal %s request: %v", path, err)
		}
	}
	resp, err := cl.Post(e.Srv.URL+path, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading response: %v", path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("POST %s: Content-Type %q, want application/json", path, ct)
	}
	return resp.StatusCode, out
}

// Nonce fetches a fresh nonce over HTTPS.
func (e *testEnv) Nonce(t testing.TB) string {
	t.Helper()
	st, body := e.Post(t, e.Client(t), wire.PathNonce, []byte{})
	n := decodeOK[wire.NonceResponse](t, st, body)
	if n.Nonce == "" || !n.Expires.After(e.Clock.Now()) {
		t.Fatalf("nonce response %+v", n)
	}
	return n.Nonce
}

// Token creates an enrollment token with the given tags.
func (e *testEnv) Token(t testing.TB, tags ...string) string {
	t.Helper()
	return e.TokenTTL(t, 0, tags...)
}

// TokenTTL creates an enrollment token valid for ttl (0: the default).
func (e *testEnv) TokenTTL(t testing.TB, ttl time.Duration, tags ...string) string {
	t.Helper()
	var ts []certs.Tag
	for _, s := range tags {
		tag, err := certs.ParseTag(s)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tag)
	}
	tok, _, err := e.CA.CreateToken(context.Background(), ts, ttl)
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	return tok
}

// Devices lists the CA's devices.
func (e *testEnv) Devices(t testing.TB) []store.Device {
	t.Helper()
	devs, err := e.CA.Devices(context.Background())
	if err != nil {
		t.Fatalf("Devices: %v", err)
	}
	return devs
}

// ExpectedAddresses returns the overlay addresses of allocation index idx.
func (e *testEnv) ExpectedAddresses(idx uint64) []netip.Addr {
	cfg := e.CA.Config()
	v4, v6 := cfg.OverlayV4.Masked().Addr(), cfg.OverlayV6.Masked().Addr()
	for range idx {
		v4, v6 = v4.Next(), v6.Next()
	}
	return []netip.Addr{v4, v6}
}

// Enroll enrolls d with token over HTTPS and checks that it got the next
// allocation index and a bundle that verifies.
func (e *testEnv) Enroll(t testing.TB, d *testDevice, token string) certs.Identity {
	t.Helper()
	st, body := e.Post(t, e.Client(t), wire.PathEnroll, d.EnrollRequest(t, token, e.Nonce(t)))
	resp := decodeOK[wire.CertificateResponse](t, st, body)
	id := d.Accept(t, e, resp)
	if want := e.ExpectedAddresses(e.nextIndex); !reflect.DeepEqual(id.Addresses, want) {
		t.Fatalf("enrollment got addresses %v, want %v (allocation index %d)", id.Addresses, want, e.nextIndex)
	}
	e.nextIndex++
	return id
}

// Renew renews d over mTLS, presenting d's current certificate, and returns
// the raw answer.
func (e *testEnv) Renew(t testing.TB, d *testDevice, req wire.RenewRequest) (int, []byte) {
	t.Helper()
	return e.Post(t, e.Client(t, d.TLSCertificate(t)), wire.PathRenew, req)
}

// testDevice is an agent: a P-256 device key, an X25519 WireGuard key, and
// once enrolled its certificate.
type testDevice struct {
	Hostname string
	Key      crypto.Signer
	WGPub    certs.WireGuardKey
	wgPriv   x25519.PrivateKey

	ID   certs.DeviceID
	Resp wire.CertificateResponse
}

func newTestDevice(t testing.TB, hostname string) *testDevice {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d := &testDevice{Hostname: hostname, Key: key}
	d.RotateWireGuardKey(t)
	return d
}

// RotateWireGuardKey replaces the WireGuard key pair.
func (d *testDevice) RotateWireGuardKey(t testing.TB) {
	t.Helper()
	pub, priv, err := x25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d.WGPub, d.wgPriv = certs.WireGuardKey(pub), priv
}

// CSR returns a certificate request signed by the device key.
func (d *testDevice) CSR(t testing.TB) []byte { return csrFor(t, d.Key, nil) }

// csrFor builds a CSR signed by key (tmpl may be nil).
func csrFor(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return der
}

// Proof signs wire.ProofMessage(nonce, csr's SPKI) with the WireGuard key.
func (d *testDevice) Proof(t testing.TB, nonce string, csrDER []byte) []byte {
	t.Helper()
	return proofBy(t, d.wgPriv, nonce, csrDER)
}

func proofBy(t testing.TB, priv x25519.PrivateKey, nonce string, csrDER []byte) []byte {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatalf("proof over an unparsable CSR: %v", err)
	}
	sig, err := x25519.Sign(rand.Reader, priv, wire.ProofMessage(nonce, csr.RawSubjectPublicKeyInfo))
	if err != nil {
		t.Fatalf("x25519.Sign: %v", err)
	}
	return sig
}

// EnrollRequest is a correct enrollment request.
func (d *testDevice) EnrollRequest(t testing.TB, token, nonce string) wire.EnrollRequest {
	t.Helper()
	csr := d.CSR(t)
	return wire.EnrollRequest{
		Token: token, Hostname: d.Hostname, CSR: csr, WireGuardKey: d.WGPub,
		Nonce: nonce, Proof: d.Proof(t, nonce, csr),
	}
}

// RenewRequest is a correct renewal request.
func (d *testDevice) RenewRequest(t testing.TB, nonce string) wire.RenewRequest {
	t.Helper()
	csr := d.CSR(t)
	return wire.RenewRequest{CSR: csr, WireGuardKey: d.WGPub, Nonce: nonce, Proof: d.Proof(t, nonce, csr)}
}

// Accept checks a certificate response for d and keeps it: the bundle
// verifies against the CA's roots and certifies d's keys.
func (d *testDevice) Accept(t testing.TB, e *testEnv, resp wire.CertificateResponse) certs.Identity {
	t.Helper()
	b, err := certs.ParseBundle(resp.Bundle)
	if err != nil {
		t.Fatalf("ParseBundle: %v", err)
	}
	id, err := certs.Verify(b, e.CA.Roots(), nil, e.Clock.Now())
	if err != nil {
		t.Fatalf("issued bundle does not verify: %v", err)
	}
	if id.DeviceID != resp.DeviceID {
		t.Fatalf("certificate is for device %s, response says %s", id.DeviceID, resp.DeviceID)
	}
	if id.WireGuardKey != d.WGPub {
		t.Fatalf("certificate carries WireGuard key %s, want %s", id.WireGuardKey, d.WGPub)
	}
	if !b.Machine.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(d.Key.Public()) {
		t.Fatalf("certificate's subject key is not the device key")
	}
	if !resp.NotAfter.Equal(b.Machine.NotAfter) {
		t.Fatalf("response not_after %s, certificate %s", resp.NotAfter, b.Machine.NotAfter)
	}
	if !reflect.DeepEqual(resp.OverlayRoutes, e.CA.Config().Overlays()) {
		t.Fatalf("overlay routes %v, want %v", resp.OverlayRoutes, e.CA.Config().Overlays())
	}
	d.ID, d.Resp = resp.DeviceID, resp
	return id
}

// TLSCertificate is d's current machine certificate with the intermediate
// and the device key, for mTLS.
func (d *testDevice) TLSCertificate(t testing.TB) tls.Certificate {
	t.Helper()
	if d.Resp.Bundle.Machine == nil {
		t.Fatal("device has no certificate")
	}
	chain := append([][]byte{d.Resp.Bundle.Machine}, d.Resp.Bundle.Intermediates...)
	return tls.Certificate{Certificate: chain, PrivateKey: d.Key}
}

// Certificate parses d's current machine certificate.
func (d *testDevice) Certificate(t testing.TB) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(d.Resp.Bundle.Machine)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// decodeOK asserts a 200 answer and decodes it.
func decodeOK[T any](t testing.TB, status int, body []byte) T {
	t.Helper()
	var v T
	if status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", status, body)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decoding %T: %v (%s)", v, err, body)
	}
	return v
}

// wantRefusal asserts a refusal with the given status and code whose
// message contains every one of msgs (case-insensitive).
func wantRefusal(t testing.TB, status int, body []byte, wantStatus int, wantCode ca.Code, msgs ...string) {
	t.Helper()
	var e wire.Error
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("refusal body is not a wire.Error: %v (%q)", err, body)
	}
	t.Logf("refused: %d %s: %s", status, e.Code, e.Error)
	if status != wantStatus || e.Code != string(wantCode) {
		t.Fatalf("got %d %q (%s), want %d %q", status, e.Code, e.Error, wantStatus, wantCode)
	}
	for _, m := range msgs {
		if !strings.Contains(strings.ToLower(e.Error), strings.ToLower(m)) {
			t.Fatalf("error message %q does not say %q", e.Error, m)
		}
	}
}
