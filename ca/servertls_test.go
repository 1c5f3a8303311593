package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/fuzzedit"
	"github.com/certmesh/certmesh/internal/wire"
	"go.step.sm/crypto/pemutil"
)

// serverPair is the server TLS certificate init wrote, as a coordinator
// holds it.
func serverPair(t *testing.T, dir string) tls.Certificate {
	t.Helper()
	kp, err := ca.LoadServerCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	return *kp
}

func TestServerCertificateRenewal(t *testing.T) {
	e := newTestEnv(t)
	old := serverPair(t, e.Dir)
	key, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	e.Clock.Set(21 * 24 * time.Hour) // past two thirds of the 30 days
	st, body := e.Post(t, e.Client(t, old), wire.PathServerCertificate, wire.ServerCertificateRequest{CSR: csrFor(t, key, nil)})
	resp := decodeOK[wire.ServerCertificateResponse](t, st, body)
	var chain []*x509.Certificate
	for _, der := range resp.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	if err := ca.VerifyServerCertificate(chain, e.CA.Roots(), e.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(chain[0].PublicKey) {
		t.Fatal("the renewed certificate is not for the key of the CSR")
	}
	if !chain[0].NotAfter.After(old.Leaf.NotAfter.Add(20 * 24 * time.Hour)) {
		t.Fatalf("renewed certificate ends %s, the old one %s", chain[0].NotAfter, old.Leaf.NotAfter)
	}
}

// TestServerCertificateRenewalRefusals: only the holder of a valid server
// certificate gets one; a device's machine certificate (an agent that would
// become the CA's or the coordinator's TLS identity) gets nothing.
func TestServerCertificateRenewalRefusals(t *testing.T) {
	e := newTestEnv(t)
	d := newTestDevice(t, "laptop")
	e.Enroll(t, d, e.Token(t))
	key, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	good := wire.ServerCertificateRequest{CSR: csrFor(t, key, nil)}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bad := csrFor(t, key, nil)
	bad[len(bad)-3] ^= 0xff // the signature
	server := serverPair(t, e.Dir)
	for _, tc := range []struct {
		name   string
		client []tls.Certificate
		req    wire.ServerCertificateRequest
		status int
		code   ca.Code
		msg    string
	}{
		{"no client certificate", nil, good, http.StatusForbidden, ca.CodeForbidden, "mTLS"},
		{"machine certificate", []tls.Certificate{d.TLSCertificate(t)}, good, http.StatusForbidden, ca.CodeForbidden, "not a server certificate"},
		{"garbage CSR", []tls.Certificate{server}, wire.ServerCertificateRequest{CSR: []byte("no")}, http.StatusBadRequest, ca.CodeBadCSR, "DER"},
		{"CSR signature", []tls.Certificate{server}, wire.ServerCertificateRequest{CSR: bad}, http.StatusBadRequest, ca.CodeBadCSR, "signature"},
		{"P-384 key", []tls.Certificate{server}, wire.ServerCertificateRequest{CSR: csrFor(t, p384, nil)}, http.StatusBadRequest, ca.CodeBadCSR, "P-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := e.Post(t, e.Client(t, tc.client...), wire.PathServerCertificate, tc.req)
			wantRefusal(t, st, body, tc.status, tc.code, tc.msg)
		})
	}
	// Expired by the CA's clock: too late, the operator copies a new pair.
	e.Clock.Set(31 * 24 * time.Hour)
	st, body := e.Post(t, e.Client(t, server), wire.PathServerCertificate, good)
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeForbidden, "expired")
}

// TestSaveServerCertificateCrash: a save cut short at any step leaves a
// pair that loads: the old one before the certificate was replaced, the
// new one after.
func TestSaveServerCertificateCrash(t *testing.T) {
	e := openTestCA(t)
	old := serverPair(t, e.Dir)
	keyFile, nextFile := filepath.Join(e.Dir, ca.ServerKeyFile), filepath.Join(e.Dir, ca.ServerKeyFile+".next")
	matching, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	block, err := pemutil.Serialize(other)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM := pem.EncodeToMemory(block)

	// Crash after the new key was written, before the certificate: the new
	// key is dropped, the old pair stays.
	if err := os.WriteFile(nextFile, otherPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := serverPair(t, e.Dir); !got.Leaf.Equal(old.Leaf) {
		t.Fatal("the old pair did not survive a crash before the certificate was replaced")
	}
	if _, err := os.Stat(nextFile); !os.IsNotExist(err) {
		t.Fatalf("unused new key left behind: %v", err)
	}

	// Crash after the certificate was replaced, before the key: the key
	// that matches it is moved into place.
	if err := os.WriteFile(nextFile, matching, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, otherPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := serverPair(t, e.Dir); !got.Leaf.Equal(old.Leaf) {
		t.Fatal("the pair whose key was still to be moved did not load")
	}
	if _, err := os.Stat(nextFile); !os.IsNotExist(err) {
		t.Fatalf("new key not moved into place: %v", err)
	}
}

// FuzzServerCertificateRequest: the CSR of a coordinator's renewal comes
// from the network. Nothing panics, every refusal is typed, and what is
// issued is a server certificate for the CSR's own key.
func FuzzServerCertificateRequest(f *testing.F) {
	e := openTestCA(f)
	kp, err := ca.LoadServerCertificate(e.Dir)
	if err != nil {
		f.Fatal(err)
	}
	var peer []*x509.Certificate
	for _, der := range kp.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			f.Fatal(err)
		}
		peer = append(peer, c)
	}
	key, err := certs.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	csr := csrFor(f, key, nil)
	f.Add([]byte(nil))
	f.Add(fuzzedit.Xor(len(csr)-3, 1))
	f.Add(fuzzedit.Cut(len(csr) / 2))
	f.Add(fuzzedit.Set(30, 0))
	f.Fuzz(func(t *testing.T, edits []byte) {
		der := fuzzedit.Apply(csr, edits)
		resp, err := e.CA.RenewServerCertificate(t.Context(), peer, wire.ServerCertificateRequest{CSR: der})
		if err != nil {
			if ca.CodeOf(err) == ca.CodeInternal {
				t.Fatalf("untyped refusal: %v", err)
			}
			return
		}
		parsed, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("issued for a CSR that does not parse: %v", err)
		}
		var chain []*x509.Certificate
		for _, c := range resp.Chain {
			cert, err := x509.ParseCertificate(c)
			if err != nil {
				t.Fatal(err)
			}
			chain = append(chain, cert)
		}
		if err := ca.VerifyServerCertificate(chain, e.CA.Roots(), e.Clock.Now()); err != nil {
			t.Fatal(err)
		}
		if !chain[0].PublicKey.(*ecdsa.PublicKey).Equal(parsed.PublicKey) {
			t.Fatal("issued for another key than the CSR's")
		}
	})
}
