package agent

import (
	"context"
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

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/internal/wire"
)

// identity is the agent's current machine credential, swapped on renewal,
// and the user certificate of the person logged in, if any. Both certify
// the same device key, so renewal does not touch the user certificate.
type identity struct {
	mu      sync.RWMutex
	cert    *tls.Certificate
	bundle  certs.Bundle
	userCrt *x509.Certificate
}

// setUser replaces the user certificate (nil: logged out) and returns the
// previous one.
func (id *identity) setUser(u *x509.Certificate) *x509.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	old := id.userCrt
	id.userCrt = u
	return old
}

func (id *identity) user() *x509.Certificate {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.userCrt
}

func (id *identity) set(b certs.Bundle, k *keys) {
	c := &tls.Certificate{PrivateKey: k.device, Leaf: b.Machine}
	c.Certificate = append(c.Certificate, b.Machine.Raw)
	for _, i := range b.Intermediates {
		c.Certificate = append(c.Certificate, i.Raw)
	}
	id.mu.Lock()
	id.cert, id.bundle = c, b
	id.mu.Unlock()
}

// get returns the TLS credential (machine certificate) and the bundle we
// publish: the machine certificate, its chain and the user certificate.
func (id *identity) get() (*tls.Certificate, certs.Bundle) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	b := id.bundle
	b.User = id.userCrt
	return id.cert, b
}

// serverTLS verifies the CA/coordinator against the pinned root and the
// name server.<trust domain>, whatever address was dialled, at the time
// now (nil: the system clock), and presents the machine certificate when
// there is one that has not expired (a server refuses the whole handshake
// for an expired one; without it, public endpoints and renewal after
// expiry still answer).
func serverTLS(roots *certs.Roots, id *identity, now func() time.Time) *tls.Config {
	return tlsclient.Config(roots, now, func() *tls.Certificate {
		if id == nil {
			return &tls.Certificate{}
		}
		c, _ := id.get()
		if c == nil || (now != nil && c.Leaf != nil && now().After(c.Leaf.NotAfter)) {
			return &tls.Certificate{}
		}
		return c
	})
}

// apiClient makes JSON calls to the CA or coordinator.
type apiClient struct {
	base *url.URL
	hc   *http.Client
	rt   *rotatingTransport
	log  *slog.Logger // if set, says when call waits out a 429
}

func newAPIClient(base *url.URL, tlsCfg *tls.Config) *apiClient {
	rt := newRotatingTransport(tlsCfg)
	return &apiClient{base: base, hc: &http.Client{Transport: rt}, rt: rt}
}

// rotate moves the client to fresh connections, which present the current
// certificate (see rotatingTransport).
func (a *apiClient) rotate() { a.rt.rotate(generationDrain) }

func (a *apiClient) url(path string) string { return a.base.JoinPath(path).String() }

// callOnce POSTs (or GETs, with in == nil and get) JSON and decodes the
// answer; call (ratelimit.go) retries it when the server says 429.
func (a *apiClient) callOnce(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytesReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.url(path), body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	lr := io.LimitReader(resp.Body, wire.MaxEventSize)
	if resp.StatusCode/100 != 2 {
		var e wire.Error
		_ = json.NewDecoder(lr).Decode(&e)
		return &ServerError{Status: resp.StatusCode, Code: e.Code, Msg: e.Error, RetryAfter: retryAfter(resp.Header, time.Now())}
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(lr).Decode(out); err != nil {
		return fmt.Errorf("decoding answer to %s: %w", path, err)
	}
	return nil
}

// ServerError is a refusal from the CA or coordinator.
type ServerError struct {
	Status int
	Code   string
	Msg    string
	// RetryAfter is the server's Retry-After, bounded (zero without one).
	RetryAfter time.Duration
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("server refused (%d %s): %s", e.Status, e.Code, e.Msg)
}

// bootstrapRoots fetches the CA's roots over a connection that is not yet
// trusted and keeps only the root whose SHA-256 matches the pin. It then
// checks the server again over TLS verified against that root.
func bootstrapRoots(ctx context.Context, server *url.URL, pin certs.Fingerprint) (*certs.Roots, error) {
	insecure := newAPIClient(server, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}) // checked below against the pin
	var rr wire.RootsResponse
	if err := insecure.call(ctx, http.MethodGet, wire.PathRoots, nil, &rr); err != nil {
		return nil, fmt.Errorf("fetching roots: %w", err)
	}
	all, err := certs.ParsePEM([]byte(rr.RootsPEM))
	if err != nil {
		return nil, fmt.Errorf("fetching roots: %w", err)
	}
	var pinned *x509.Certificate
	for _, c := range all {
		if pin.Matches(c) {
			pinned = c
		}
	}
	if pinned == nil {
		return nil, fmt.Errorf("the server offered no root with fingerprint %s: refusing to trust it", pin)
	}
	td, err := certs.ParseTrustDomain(string(rr.TrustDomain))
	if err != nil {
		return nil, err
	}
	roots, err := certs.NewRoots(td, pinned)
	if err != nil {
		return nil, err
	}
	verified := newAPIClient(server, serverTLS(roots, nil, nil))
	if err := verified.call(ctx, http.MethodGet, wire.PathRoots, nil, &rr); err != nil {
		return nil, fmt.Errorf("server does not prove it belongs to the pinned root: %w", err)
	}
	return roots, nil
}
