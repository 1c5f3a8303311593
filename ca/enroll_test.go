package ca_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
)

func TestEnrollRenewRevoke(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	cfg := e.CA.Config()
	if got := time.Duration(cfg.MachineCertLifetime); got != 24*time.Hour {
		t.Fatalf("default machine_cert_lifetime = %s, want 24h", got)
	}
	ula := netip.MustParsePrefix("fd00::/8")

	// First enrollment.
	d1 := newTestDevice(t, "Laptop-1") // the CA lower-cases it
	before := e.Clock.Now()
	id1 := e.Enroll(t, d1, e.Token(t, "db", "tag:prod"))
	after := e.Clock.Now()
	m1 := d1.Certificate(t)

	if id1.Hostname != "laptop-1" {
		t.Errorf("hostname %q, want laptop-1", id1.Hostname)
	}
	if want := []certs.Tag{"db", "prod"}; !reflect.DeepEqual(id1.Tags, want) {
		t.Errorf("tags %v, want %v", id1.Tags, want)
	}
	if id1.Attestation != certs.AttestationToken {
		t.Errorf("attestation %q, want token", id1.Attestation)
	}
	if len(id1.Addresses) != 2 || !id1.Addresses[0].Is4() || !cfg.OverlayV4.Contains(id1.Addresses[0]) {
		t.Fatalf("addresses %v: want an IPv4 in %s first", id1.Addresses, cfg.OverlayV4)
	}
	if v6 := id1.Addresses[1]; !v6.Is6() || !ula.Contains(v6) || !cfg.OverlayV6.Contains(v6) {
		t.Fatalf("addresses %v: want an IPv6 in the ULA %s second", id1.Addresses, cfg.OverlayV6)
	}
	if want := "laptop-1.corp.example"; !slices.Equal(m1.DNSNames, []string{want}) {
		t.Errorf("DNS SANs %v, want [%s]", m1.DNSNames, want)
	}
	if want := "spiffe://corp.example/device/" + string(d1.ID); len(m1.URIs) != 1 || m1.URIs[0].String() != want {
		t.Errorf("URI SANs %v, want [%s]", m1.URIs, want)
	}
	// Lifetime: the configured 24h from issuance (X.509 times have whole
	// seconds), starting cert_backdate early for clock skew.
	life := time.Duration(cfg.MachineCertLifetime)
	if m1.NotAfter.Before(before.Add(life).Truncate(time.Second)) || m1.NotAfter.After(after.Add(life)) {
		t.Errorf("NotAfter %s: want issuance time (%s..%s) + %s", m1.NotAfter, before, after, life)
	}
	if m1.NotBefore.After(before.Add(-ca.DefaultCertBackdate)) || m1.NotBefore.Before(before.Add(-ca.DefaultCertBackdate-time.Second)) {
		t.Errorf("NotBefore %s: want %s before %s (cert_backdate)", m1.NotBefore, ca.DefaultCertBackdate, before)
	}

	devs := e.Devices(t)
	if len(devs) != 1 {
		t.Fatalf("Devices = %d, want 1", len(devs))
	}
	if dv := devs[0]; dv.ID != d1.ID || dv.State != store.DeviceActive || dv.Hostname != "laptop-1" ||
		!slices.Equal(dv.Addresses, id1.Addresses) || dv.WireGuardKey != d1.WGPub ||
		dv.Serial != id1.Serial || dv.Attestation != certs.AttestationToken || !reflect.DeepEqual(dv.Tags, id1.Tags) {
		t.Fatalf("device record %+v does not match the certificate %+v", dv, id1)
	}

	// A second enrollment gets other addresses.
	d2 := newTestDevice(t, "laptop-2")
	id2 := e.Enroll(t, d2, e.Token(t))
	if id2.DeviceID == id1.DeviceID {
		t.Fatal("two enrollments got the same device ID")
	}
	for _, a := range id2.Addresses {
		if slices.Contains(id1.Addresses, a) {
			t.Fatalf("second device got address %s of the first", a)
		}
	}
	if len(id2.Tags) != 0 {
		t.Errorf("device enrolled with an untagged token has tags %v", id2.Tags)
	}

	// Renewal over mTLS keeps the device ID and the addresses.
	oldCert := d1.TLSCertificate(t)
	st, body := e.Renew(t, d1, d1.RenewRequest(t, e.Nonce(t)))
	renewed := d1.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
	if renewed.DeviceID != id1.DeviceID || !slices.Equal(renewed.Addresses, id1.Addresses) ||
		renewed.Hostname != id1.Hostname || !reflect.DeepEqual(renewed.Tags, id1.Tags) {
		t.Fatalf("renewed identity %+v, want the same device as %+v", renewed, id1)
	}
	if renewed.Serial == id1.Serial {
		t.Fatal("renewal returned the same certificate")
	}
	if dv := deviceByID(t, e, d1.ID); dv.Serial != renewed.Serial || dv.RenewedAt.IsZero() {
		t.Fatalf("device record after renewal: serial %s renewed %s, want serial %s", dv.Serial, dv.RenewedAt, renewed.Serial)
	}

	// The superseded certificate renews again (its answer was lost: see
	// TestRenewalAnswerLost) and gets the certificate already issued.
	st, body = e.Post(t, e.Client(t, oldCert), wire.PathRenew, d1.RenewRequest(t, e.Nonce(t)))
	if again := d1.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body)); again.Serial != renewed.Serial {
		t.Fatalf("renewal with the superseded certificate got %s, want %s", again.Serial, renewed.Serial)
	}

	// Renewal must keep the device key.
	other := newTestDevice(t, "x")
	n := e.Nonce(t)
	csr := other.CSR(t)
	st, body = e.Renew(t, d1, wire.RenewRequest{CSR: csr, WireGuardKey: d1.WGPub, Nonce: n, Proof: d1.Proof(t, n, csr)})
	wantRefusal(t, st, body, http.StatusBadRequest, ca.CodeBadCSR, "device key")

	// Renewal needs a client certificate.
	st, body = e.Post(t, e.Client(t), wire.PathRenew, d1.RenewRequest(t, e.Nonce(t)))
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeForbidden, "mTLS")

	// The current certificate still renews (none of the refusals above
	// changed anything), with a rotated WireGuard key.
	d1.RotateWireGuardKey(t)
	st, body = e.Renew(t, d1, d1.RenewRequest(t, e.Nonce(t)))
	rotated := d1.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
	if rotated.WireGuardKey != d1.WGPub || !slices.Equal(rotated.Addresses, id1.Addresses) {
		t.Fatalf("rotated identity %+v", rotated)
	}

	// Revocation ends renewal.
	var kicked []certs.DeviceID
	e.CA.OnRevoke(func(id certs.DeviceID) { kicked = append(kicked, id) })
	dev, err := e.CA.Revoke(ctx, d1.ID)
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if dev.State != store.DeviceRevoked || dev.RevokedAt.IsZero() || !slices.Equal(kicked, []certs.DeviceID{d1.ID}) {
		t.Fatalf("after Revoke: device %+v, OnRevoke calls %v", dev, kicked)
	}
	if err := e.CA.DeviceActive(ctx, d1.ID); err == nil {
		t.Fatal("DeviceActive accepts a revoked device")
	}
	if err := e.CA.DeviceActive(ctx, d2.ID); err != nil {
		t.Fatalf("DeviceActive(%s): %v", d2.ID, err)
	}
	st, body = e.Renew(t, d1, d1.RenewRequest(t, e.Nonce(t)))
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeForbidden, "revoked")

	// Addresses are never reused: the next device gets index 3, not the
	// revoked device's 1. (e.Enroll checks the index.)
	d3 := newTestDevice(t, "laptop-3")
	id3 := e.Enroll(t, d3, e.Token(t))
	if slices.Contains(id3.Addresses, id1.Addresses[0]) {
		t.Fatalf("address %s of a revoked device was reused", id1.Addresses[0])
	}
	if devs := e.Devices(t); len(devs) != 3 {
		t.Fatalf("Devices = %d, want 3", len(devs))
	}
}

func deviceByID(t testing.TB, e *testEnv, id certs.DeviceID) store.Device {
	t.Helper()
	for _, d := range e.Devices(t) {
		if d.ID == id {
			return d
		}
	}
	t.Fatalf("device %s is not listed", id)
	return store.Device{}
}

// The CA must decide every name and extension itself: what the CSR asks
// for is ignored.
func TestEnrollIgnoresWhatTheCSRAsksFor(t *testing.T) {
	e := newTestEnv(t)
	d := newTestDevice(t, "honest")
	victim := newTestDevice(t, "victim")
	wgDER, err := asn1.Marshal(victim.WGPub[:])
	if err != nil {
		t.Fatal(err)
	}
	evilURI, _ := url.Parse("spiffe://corp.example/device/aaaaaaaaaaaaaaaa")
	csr := csrFor(t, d.Key, &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: "admin.corp.example"},
		DNSNames:        []string{"admin.corp.example"},
		URIs:            []*url.URL{evilURI},
		IPAddresses:     []net.IP{net.ParseIP("100.80.0.1")},
		ExtraExtensions: []pkix.Extension{{Id: certs.OIDWireGuardKey, Value: wgDER}},
	})
	n := e.Nonce(t)
	req := wire.EnrollRequest{Token: e.Token(t), Hostname: d.Hostname, CSR: csr, WireGuardKey: d.WGPub, Nonce: n, Proof: d.Proof(t, n, csr)}
	st, body := e.Post(t, e.Client(t), wire.PathEnroll, req)
	id := d.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
	m := d.Certificate(t)
	if id.Hostname != "honest" || !slices.Equal(m.DNSNames, []string{"honest.corp.example"}) ||
		m.Subject.CommonName != "honest.corp.example" || len(m.URIs) != 1 || strings.HasSuffix(m.URIs[0].Path, "aaaaaaaaaaaaaaaa") {
		t.Fatalf("certificate took names from the CSR: CN %q DNS %v URIs %v", m.Subject.CommonName, m.DNSNames, m.URIs)
	}
	if !slices.Equal(id.Addresses, e.ExpectedAddresses(1)) {
		t.Fatalf("certificate took addresses from the CSR: %v", id.Addresses)
	}
}

// Enrollments in parallel each get their own address and device.
func TestConcurrentEnrollments(t *testing.T) {
	e := newTestEnv(t)
	const n = 8
	toks := make([]string, n)
	for i := range toks {
		toks[i] = e.Token(t)
	}
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := newTestDevice(t, "node")
			st, body := e.Post(t, e.Client(t), wire.PathEnroll, d.EnrollRequest(t, toks[i], e.Nonce(t)))
			if st != http.StatusOK {
				errs <- string(body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Errorf("parallel enrollment refused: %s", msg)
	}
	seen := map[netip.Addr]bool{}
	for _, d := range e.Devices(t) {
		for _, a := range d.Addresses {
			if seen[a] {
				t.Fatalf("address %s allocated twice", a)
			}
			seen[a] = true
		}
	}
	if len(seen) != 2*n {
		t.Fatalf("%d addresses for %d devices", len(seen), n)
	}
}

// The renewal endpoint served without TLS (a wiring mistake) must refuse,
// not crash.
func TestRenewWithoutTLS(t *testing.T) {
	e := openTestCA(t)
	body := strings.NewReader(`{"nonce":"x"}`)
	rec := httptest.NewRecorder()
	e.CA.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, wire.PathRenew, body))
	wantRefusal(t, rec.Code, rec.Body.Bytes(), http.StatusForbidden, ca.CodeForbidden, "mTLS")
}

// GET roots answers the trust anchors over the verified connection.
func TestRoots(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.Client(t).Get(e.Srv.URL + wire.PathRoots)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r wire.RootsResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	rs, err := certs.ParsePEM([]byte(r.RootsPEM))
	if err != nil || r.TrustDomain != testTrustDomain || len(rs) != 1 || !rs[0].Equal(e.CA.Roots().Certificates()[0]) {
		t.Fatalf("roots response %+v (%v)", r, err)
	}
}
