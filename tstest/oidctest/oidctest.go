// Package oidctest runs a real OpenID Provider inside the test process, for
// testing relying parties (the CA's SSO login) without a network or a browser.
//
// The provider is github.com/zitadel/oidc/v3's pkg/op over an in-memory
// storage, served over HTTPS on 127.0.0.1 with a throwaway CA (use
// Provider.HTTPClient, CertPool or CACertPEM to trust it). It serves
// discovery, JWKS, authorization (authorization code flow; PKCE with S256 is
// required by default), token, userinfo, introspection, revocation and the
// device authorization grant (RFC 8628), plus a minimal login page and device
// verification page that Login, ApproveDevice and DenyDevice drive over HTTP.
//
// For rejection tests it can misbehave on purpose: SetAttack rewrites the ID
// tokens its token endpoint hands out (wrong issuer, audience, nonce, expiry,
// claims, or a signature by a key that is not in its JWKS), MintIDToken signs
// arbitrary claims, and SetDown/Stop/Start take it off the air.
package oidctest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"
	"golang.org/x/text/language"
)

const (
	loginPath  = "/login"
	devicePath = "/device"
)

// User is an account at the provider.
type User struct {
	Subject       string // the "sub" claim; required
	Username      string // login name; defaults to Email, then Subject
	Password      string // compared exactly by the login page
	Email         string
	EmailVerified bool
	Name          string
	Groups        []string       // put under the groups claim (see WithGroupsClaim)
	Claims        map[string]any // extra claims for the ID token and userinfo
}

func (u *User) loginName() string {
	switch {
	case u.Username != "":
		return u.Username
	case u.Email != "":
		return u.Email
	}
	return u.Subject
}

// Option configures New.
type Option func(*config)

type config struct {
	groupsClaim string
	idTokenTTL  time.Duration
	requirePKCE bool
	deviceTTL   time.Duration
	devicePoll  time.Duration
	clients     []*client
	users       []User
}

// WithGroupsClaim sets the name of the claim that carries the user's groups
// (default "groups").
func WithGroupsClaim(name string) Option { return func(c *config) { c.groupsClaim = name } }

// WithIDTokenLifetime sets the lifetime of the ID tokens the provider issues
// (default one hour).
func WithIDTokenLifetime(d time.Duration) Option { return func(c *config) { c.idTokenTTL = d } }

// WithoutPKCERequirement lets authorization requests without PKCE through.
// By default the provider refuses any authorization request that lacks a
// code_challenge with method S256, so a test proves the relying party uses it.
func WithoutPKCERequirement() Option { return func(c *config) { c.requirePKCE = false } }

// WithDeviceFlow sets how long a device code lives (default 5 minutes) and the
// polling interval the provider announces (default 1 second; RFC 8628
// clients poll no faster).
func WithDeviceFlow(lifetime, interval time.Duration) Option {
	return func(c *config) { c.deviceTTL, c.devicePoll = lifetime, interval }
}

// WithClient registers a client at start; see Provider.AddClient.
func WithClient(id, secret string, redirectURIs ...string) Option {
	return func(c *config) {
		c.clients = append(c.clients, &client{id: id, secret: secret, redirectURIs: slices.Clone(redirectURIs)})
	}
}

// WithUser registers a user at start; see Provider.AddUser.
func WithUser(u User) Option { return func(c *config) { c.users = append(c.users, u) } }

// Provider is a running OpenID Provider. Its methods are safe for concurrent
// use; MintIDToken, AddUser and CAFile report failures with t.Fatal, so call
// those from the test goroutine.
type Provider struct {
	t      testing.TB
	addr   string
	issuer string

	caPEM     []byte
	pool      *x509.CertPool
	serverTLS *tls.Config
	transport *http.Transport
	client    *http.Client

	op      *op.Provider
	store   *storage
	rogue   *rsaKey
	handler http.Handler

	down atomic.Bool // SetDown

	mu     sync.Mutex
	srv    *http.Server
	attack Attack
	issued []string
}

// New starts a provider on 127.0.0.1 and stops it when the test ends.
func New(t testing.TB, opts ...Option) *Provider {
	t.Helper()
	cfg := config{
		groupsClaim: "groups",
		idTokenTTL:  time.Hour,
		requirePKCE: true,
		deviceTTL:   5 * time.Minute,
		devicePoll:  time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("oidctest: listen: %v", err)
	}
	p := &Provider{t: t, addr: ln.Addr().String()}
	p.issuer = "https://" + p.addr

	if err := p.setupTLS(); err != nil {
		ln.Close()
		t.Fatalf("oidctest: %v", err)
	}
	signing, err := newRSAKey("oidctest")
	if err == nil {
		p.rogue, err = newRSAKey("rogue")
	}
	if err != nil {
		ln.Close()
		t.Fatalf("oidctest: generate keys: %v", err)
	}

	p.store = newStorage(signing)
	p.store.groupsClaim = cfg.groupsClaim
	p.store.idTokenTTL = cfg.idTokenTTL
	p.store.requirePKCE = cfg.requirePKCE
	for _, c := range cfg.clients {
		p.store.addClient(c)
	}
	for _, u := range cfg.users {
		p.store.addUser(u)
	}

	opCfg := &op.Config{
		CodeMethodS256:     true,
		AuthMethodPost:     true,
		SupportedUILocales: []language.Tag{language.English},
		SupportedScopes: []string{
			oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, cfg.groupsClaim,
		},
		SupportedClaims: append(slices.Clone(op.DefaultSupportedClaims), cfg.groupsClaim),
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     cfg.deviceTTL,
			PollInterval: cfg.devicePoll,
			UserFormPath: devicePath,
			UserCode:     op.UserCodeBase20,
		},
	}
	if _, err := io.ReadFull(rand.Reader, opCfg.CryptoKey[:]); err != nil {
		ln.Close()
		t.Fatalf("oidctest: %v", err)
	}
	p.op, err = op.NewProvider(opCfg, p.store, op.StaticIssuer(p.issuer))
	if err != nil {
		ln.Close()
		t.Fatalf("oidctest: op.NewProvider: %v", err)
	}
	p.handler = p.routes()

	p.serve(ln)
	t.Cleanup(p.Stop)
	return p
}

func (p *Provider) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(loginPath, p.loginPage)
	mux.HandleFunc(devicePath, p.devicePage)
	mux.Handle("/", p.op)
	tokenPath := p.op.TokenEndpoint().Relative()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.IsDown() {
			http.Error(w, "oidctest: identity provider unavailable", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == tokenPath {
			p.serveToken(w, r, mux)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (p *Provider) serve(ln net.Listener) {
	srv := &http.Server{
		Handler:           p.handler,
		TLSConfig:         p.serverTLS.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go func() { _ = srv.ServeTLS(ln, "", "") }()
}

// Issuer is the issuer URL, https://127.0.0.1:PORT; discovery is at
// Issuer()+"/.well-known/openid-configuration".
func (p *Provider) Issuer() string { return p.issuer }

// HTTPClient is a client that trusts the provider's TLS certificate (and
// nothing else). It is shared: don't modify it.
func (p *Provider) HTTPClient() *http.Client { return p.client }

// CertPool holds the CA that signed the provider's TLS certificate.
func (p *Provider) CertPool() *x509.CertPool { return p.pool.Clone() }

// CACertPEM is that CA certificate in PEM, for a relying party configured
// with a CA file.
func (p *Provider) CACertPEM() []byte { return slices.Clone(p.caPEM) }

// CAFile writes CACertPEM to a file in a temporary directory of the test and
// returns its path, for a relying party configured with a CA file.
func (p *Provider) CAFile() string {
	p.t.Helper()
	path := filepath.Join(p.t.TempDir(), "oidctest-ca.pem")
	if err := os.WriteFile(path, p.caPEM, 0o644); err != nil {
		p.t.Fatalf("oidctest: CAFile: %v", err)
	}
	return path
}

// Context returns ctx carrying HTTPClient for go-oidc and golang.org/x/oauth2
// (both read oauth2.HTTPClient / oidc.ClientContext from the context).
func (p *Provider) Context(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, p.client)
}

// AddClient registers a relying party. With a secret it is a confidential
// client (client_secret_basic or client_secret_post); with an empty secret it
// is a public client that must use PKCE. Redirect URIs must match exactly
// (http is allowed for confidential clients and for loopback).
// Every client may use the authorization code and device code grants.
func (p *Provider) AddClient(id, secret string, redirectURIs ...string) {
	p.store.addClient(&client{id: id, secret: secret, redirectURIs: slices.Clone(redirectURIs)})
}

// AddUser adds (or replaces, by Subject) a user.
func (p *Provider) AddUser(u User) {
	if u.Subject == "" {
		p.t.Fatalf("oidctest: AddUser: empty Subject")
	}
	p.store.addUser(u)
}

// AuthRequests lists every authorization request the provider received, in
// order, including refused ones.
func (p *Provider) AuthRequests() []AuthRequestInfo { return p.store.authorizeLog() }

// IssuedIDTokens lists every ID token the token endpoint handed out, as sent
// (after any attack), oldest first: material for replay tests.
func (p *Provider) IssuedIDTokens() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.issued)
}

// SetDown makes every endpoint answer 503 Service Unavailable while down is
// true: an IdP that is up at the TCP level but failing.
func (p *Provider) SetDown(down bool) { p.down.Store(down) }

// IsDown reports whether SetDown(true) is in force.
func (p *Provider) IsDown() bool { return p.down.Load() }

// Stop closes the listener and all connections: connections are refused
// until Start. Stopping a stopped provider does nothing.
func (p *Provider) Stop() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
		p.transport.CloseIdleConnections()
	}
}

// Start listens again on the same address after Stop (state, keys and TLS
// certificate are kept). Starting a running provider does nothing.
func (p *Provider) Start() error {
	p.mu.Lock()
	running := p.srv != nil
	p.mu.Unlock()
	if running {
		return nil
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old socket may linger for a moment
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("oidctest: restart on %s: %w", p.addr, err)
	}
	p.serve(ln)
	return nil
}
