package turntest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/internal/wire"
)

// AgentCertificate is the TLS certificate a real agent enrolled with: its
// machine certificate and chain (STATE/enrollment.json) and its software
// device key (STATE/device.key).
func AgentCertificate(t testing.TB, stateDir string) *tls.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(stateDir, "enrollment.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Cert wire.CertificateResponse `json:"certificate"`
	}
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatal(err)
	}
	b, err := certs.ParseBundle(e.Cert.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pemutil.Read(filepath.Join(stateDir, "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Certificate{Certificate: [][]byte{b.Machine.Raw}, PrivateKey: key, Leaf: b.Machine}
	for _, i := range b.Intermediates {
		c.Certificate = append(c.Certificate, i.Raw)
	}
	return c
}

// Credentials asks the CA at serverURL for relay credentials over mTLS
// with cert, over HTTP/2 as agents talk to the server (dial: how to reach
// it, nil for the test's own network). It returns the HTTP status; the
// answer only with 200. It may run outside the test's goroutine (an agent's
// relay client calls it): it fails nothing but an HTTP/2 check.
func Credentials(t testing.TB, serverURL string, roots *certs.Roots, cert *tls.Certificate,
	dial func(ctx context.Context, network, addr string) (net.Conn, error)) (wire.RelayCredentialsResponse, int, error) {
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true, DialContext: dial,
		TLSClientConfig: tlsclient.Config(roots, nil, func() *tls.Certificate { return cert })}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Post(serverURL+wire.PathRelayCredentials, "application/json", bytes.NewReader([]byte("{}")))
	if err != nil {
		return wire.RelayCredentialsResponse{}, 0, fmt.Errorf("relay credentials: %w", err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("the server answered over %s: HTTP/2 went away with the relay's ALPN", resp.Proto)
	}
	var out wire.RelayCredentialsResponse
	if resp.StatusCode != http.StatusOK {
		return out, resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return out, resp.StatusCode, fmt.Errorf("relay credentials: %w", err)
	}
	if len(out.Relays) == 0 {
		return out, resp.StatusCode, fmt.Errorf("relay credentials without relays: %+v", out)
	}
	return out, resp.StatusCode, nil
}
