package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/internal/wire"
)

// DefaultServerCertCheck is how often a coordinator-only server checks
// whether its TLS certificate is due for renewal at the CA.
const DefaultServerCertCheck = 10 * time.Minute

// coordCert is the TLS certificate of a coordinator that runs apart from
// the CA (--role coord). It holds no signing key: two thirds into the
// certificate's life it generates a new key and asks the CA to certify it
// (wire.PathServerCertificate), authenticated over mTLS by the current
// certificate, then stores the new pair and serves it.
type coordCert struct {
	stateDir string
	caURL    *url.URL // nil: never renewed
	roots    *certs.Roots
	now      func() time.Time
	log      *slog.Logger

	mu  sync.Mutex
	cur *tls.Certificate
}

func newCoordCert(stateDir, caURL string, roots *certs.Roots, now func() time.Time, log *slog.Logger) (*coordCert, error) {
	if now == nil {
		now = time.Now
	}
	c := &coordCert{stateDir: stateDir, roots: roots, now: now, log: log}
	if caURL != "" {
		u, err := url.Parse(caURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("CA URL %q: want https://HOST:PORT", caURL)
		}
		c.caURL = u
	}
	if err := ca.CheckNoSigningKeys(stateDir); err != nil {
		return nil, err
	}
	kp, err := ca.LoadServerCertificate(stateDir)
	if err != nil {
		return nil, err
	}
	c.cur = kp
	if c.caURL == nil {
		log.Warn("no --ca-url: this server's TLS certificate will not be renewed", "not_after", kp.Leaf.NotAfter)
	}
	return c, nil
}

// GetCertificate fits tls.Config.GetCertificate.
func (c *coordCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.current(), nil
}

func (c *coordCert) current() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// run renews the certificate when due, checking every interval, until ctx
// ends. A failed renewal is logged and tried again at the next check.
func (c *coordCert) run(ctx context.Context, interval time.Duration) {
	if c.caURL == nil {
		return
	}
	if interval <= 0 {
		interval = DefaultServerCertCheck
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if leaf := c.current().Leaf; !c.now().Before(ca.ServerRenewAt(leaf)) {
			if err := c.renew(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("renewing the coordinator's TLS certificate at the CA", "ca", c.caURL.String(),
					"not_after", leaf.NotAfter, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// transport reaches the CA over mTLS with the current certificate.
func (c *coordCert) transport() *http.Transport {
	return &http.Transport{TLSClientConfig: tlsclient.Config(c.roots, c.now, c.current)}
}

// renew asks the CA for a certificate for a new key and installs it.
func (c *coordCert) renew(ctx context.Context) error {
	key, err := certs.NewKey()
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return fmt.Errorf("creating CSR: %w", err)
	}
	body, err := json.Marshal(wire.ServerCertificateRequest{CSR: csr})
	if err != nil {
		return err
	}
	tr := c.transport()
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.caURL.JoinPath(wire.PathServerCertificate).String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxRequestSize))
	if err != nil {
		return fmt.Errorf("reading the CA's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the CA refused: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	pemChain, err := checkServerCertAnswer(data, c.roots, c.now(), &key.PublicKey)
	if err != nil {
		return fmt.Errorf("the CA's answer: %w", err)
	}
	if err := ca.SaveServerCertificate(c.stateDir, pemChain, key); err != nil {
		return err
	}
	kp, err := ca.LoadServerCertificate(c.stateDir)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cur = kp
	c.mu.Unlock()
	c.log.Info("coordinator TLS certificate renewed at the CA", "serial", fmt.Sprintf("%x", kp.Leaf.SerialNumber), "not_after", kp.Leaf.NotAfter)
	return nil
}

// checkServerCertAnswer decodes the CA's answer to a server certificate
// renewal and returns its chain as PEM if it is a server certificate of the
// roots' trust domain, valid at now, for key.
func checkServerCertAnswer(data []byte, roots *certs.Roots, now time.Time, key *ecdsa.PublicKey) ([]byte, error) {
	var out wire.ServerCertificateResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	if len(out.Chain) == 0 || len(out.Chain) > 4 {
		return nil, fmt.Errorf("%d certificates: want the certificate and its intermediates (at most 4)", len(out.Chain))
	}
	chain := make([]*x509.Certificate, 0, len(out.Chain))
	var pemChain []byte
	for _, der := range out.Chain {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		chain, pemChain = append(chain, cert), append(pemChain, certs.EncodePEM(cert)...)
	}
	if err := ca.VerifyServerCertificate(chain, roots, now); err != nil {
		return nil, err
	}
	if !key.Equal(chain[0].PublicKey) {
		return nil, fmt.Errorf("it certifies another key")
	}
	return pemChain, nil
}
