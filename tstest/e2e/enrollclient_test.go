package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"go.step.sm/crypto/x25519"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// A bare device for enrollment bursts: a device key and a WireGuard key,
// no agent. What it sends is what an agent sends (agent/enroll.go).
type burstDevice struct {
	Name   string
	Token  string
	key    *ecdsa.PrivateKey
	WGPub  certs.WireGuardKey
	wgPriv x25519.PrivateKey
	// Enrolled: the CA answered with a certificate.
	Enrolled bool
}

func newBurstDevice(name, token string) (*burstDevice, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub, priv, err := x25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &burstDevice{Name: name, Token: token, key: key, WGPub: certs.WireGuardKey(pub), wgPriv: priv}, nil
}

// caClient posts JSON to a CA at url, verified against roots.
type caClient struct {
	url string
	hc  *http.Client
}

func newCAClient(url string, roots *certs.Roots) *caClient {
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: roots.Pool(), ServerName: certs.ServerName(roots.TrustDomain),
	}, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	return &caClient{url: url, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// post sends req to path; a non-200 answer is an error with its body.
func (c *caClient) post(ctx context.Context, path string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	r, err := c.hc.Do(hr)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	out, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return err
	}
	if r.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %d %s", path, r.StatusCode, bytes.TrimSpace(out))
	}
	return json.Unmarshal(out, resp)
}

// get fetches path.
func (c *caClient) get(ctx context.Context, path string) ([]byte, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+path, nil)
	if err != nil {
		return nil, err
	}
	r, err := c.hc.Do(hr)
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, r.Status)
	}
	return io.ReadAll(io.LimitReader(r.Body, 16<<20))
}

// enroll enrolls d with its token.
func (c *caClient) enroll(ctx context.Context, d *burstDevice) (wire.CertificateResponse, error) {
	var resp wire.CertificateResponse
	var n wire.NonceResponse
	if err := c.post(ctx, wire.PathNonce, struct{}{}, &n); err != nil {
		return resp, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, d.key)
	if err != nil {
		return resp, err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return resp, err
	}
	proof, err := x25519.Sign(rand.Reader, d.wgPriv, wire.ProofMessage(n.Nonce, csr.RawSubjectPublicKeyInfo))
	if err != nil {
		return resp, err
	}
	req := wire.EnrollRequest{Token: d.Token, Hostname: d.Name, CSR: csrDER, WireGuardKey: d.WGPub, Nonce: n.Nonce, Proof: proof}
	err = c.post(ctx, wire.PathEnroll, req, &resp)
	return resp, err
}
