package ca_test

import (
	"context"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/internal/wire"
)

// TestRunsWithRootKeyOffline: the README tells operators to move root.key
// offline after init. Everything the running CA does — serve TLS, enroll,
// renew, publish a policy, revoke, sign CRLs — must work without it.
func TestRunsWithRootKeyOffline(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain}); err != nil {
		t.Fatal(err)
	}
	offline := filepath.Join(t.TempDir(), "root.key")
	if err := os.Rename(filepath.Join(dir, "root.key"), offline); err != nil {
		t.Fatal(err)
	}
	clk := &testclock.Clock{}
	c, err := ca.Open(dir, ca.Options{Logger: discardLogger(), Now: clk.Now})
	if err != nil {
		t.Fatalf("Open without root.key: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	e := serve(t, &testEnv{Dir: dir, CA: c, Clock: clk, nextIndex: 1})
	ctx := context.Background()

	d := newTestDevice(t, "laptop")
	id := e.Enroll(t, d, e.Token(t))
	status, body := e.Renew(t, d, d.RenewRequest(t, e.Nonce(t)))
	d.Accept(t, e, decodeOK[wire.CertificateResponse](t, status, body))

	info, err := c.PublishPolicy(ctx, []byte(`{"rules": [{"from": ["*"], "to": ["*"], "ports": ["*"]}]}`))
	if err != nil || info.Version < 2 {
		t.Fatalf("PublishPolicy without root.key: %+v, %v", info, err)
	}
	if _, err := c.Revoke(ctx, id.DeviceID); err != nil {
		t.Fatalf("Revoke without root.key: %v", err)
	}
	if err := c.RefreshCRL(ctx); err != nil {
		t.Fatalf("CRL without root.key: %v", err)
	}
	crl, err := certs.VerifyCRL(c.CRL(), c.Roots(), []*x509.Certificate{c.Intermediate().Cert}, clk.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !crl.Revokes(d.Certificate(t)) {
		t.Error("the CRL signed without root.key does not revoke the device")
	}
	if status, _ := e.Renew(t, d, d.RenewRequest(t, e.Nonce(t))); status == http.StatusOK {
		t.Error("a revoked device renewed")
	}
	if _, err := os.Stat(filepath.Join(dir, "root.key")); !os.IsNotExist(err) {
		t.Errorf("the CA wrote a root.key back: %v", err)
	}
}
