package console

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// relyingParty is the console's side of OpenID Connect: the authorization
// code flow with PKCE and a nonce, at the CA's provider with the CA's
// client, to the console's own callback.
type relyingParty struct {
	cfg      ca.OIDCConfig
	redirect string
	groups   string // the claim that lists groups
	client   *http.Client
	now      func() time.Time

	mu       sync.Mutex
	provider *oidc.Provider
}

func newRelyingParty(cfg ca.OIDCConfig, now func() time.Time) (*relyingParty, error) {
	redirect, err := callbackURL(cfg)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pemData, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading oidc.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("oidc.ca_file %s holds no PEM certificate", cfg.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"openid", "email", "profile"}
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	groups := cfg.GroupsClaim
	if groups == "" {
		groups = ca.DefaultGroupsClaim
	}
	return &relyingParty{cfg: cfg, redirect: redirect, groups: groups, now: now,
		client: &http.Client{Transport: tr, Timeout: 15 * time.Second}}, nil
}

func (rp *relyingParty) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, rp.client)
}

// discover reads the provider's discovery document until it once
// succeeds: a provider down at start makes sign-in fail, not the server.
func (rp *relyingParty) discover(ctx context.Context) (*oidc.Provider, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.provider != nil {
		return rp.provider, nil
	}
	p, err := oidc.NewProvider(rp.ctx(ctx), rp.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("identity provider %s is unavailable (discovery failed): %w", rp.cfg.Issuer, err)
	}
	rp.provider = p
	return p, nil
}

func (rp *relyingParty) oauth(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: rp.cfg.ClientID, ClientSecret: rp.cfg.ClientSecret,
		Endpoint: p.Endpoint(), RedirectURL: rp.redirect, Scopes: rp.cfg.Scopes}
}

// authURL is where the browser signs in for login l.
func (rp *relyingParty) authURL(ctx context.Context, l *pendingLogin) (string, error) {
	p, err := rp.discover(ctx)
	if err != nil {
		return "", err
	}
	return rp.oauth(p).AuthCodeURL(l.State, oidc.Nonce(l.Nonce), oauth2.S256ChallengeOption(l.Verifier)), nil
}

// admin is who signed in, from a verified ID token.
type admin struct {
	Subject, Email string
	Groups         []string
}

// errNotAdmin: the user signed in but is in none of the admin groups.
var errNotAdmin = errors.New("not in an admin group")

// exchange redeems code with l's PKCE verifier and checks the ID token:
// signature, issuer, audience and expiry (go-oidc), the nonce, a verified
// email, and membership of an admin group.
func (rp *relyingParty) exchange(ctx context.Context, l *pendingLogin, code string) (admin, error) {
	p, err := rp.discover(ctx)
	if err != nil {
		return admin{}, err
	}
	tok, err := rp.oauth(p).Exchange(rp.ctx(ctx), code, oauth2.VerifierOption(l.Verifier))
	if err != nil {
		return admin{}, fmt.Errorf("redeeming the authorization code: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return admin{}, errors.New("the identity provider returned no ID token")
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: rp.cfg.ClientID, Now: rp.now}).Verify(rp.ctx(ctx), raw)
	if err != nil {
		return admin{}, fmt.Errorf("verifying the ID token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(l.Nonce)) != 1 {
		return admin{}, errors.New("the ID token's nonce is not this sign-in's")
	}
	var claims struct {
		Email         string          `json:"email"`
		EmailVerified json.RawMessage `json:"email_verified"`
	}
	var all map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return admin{}, fmt.Errorf("reading the ID token's claims: %w", err)
	}
	if err := idt.Claims(&all); err != nil {
		return admin{}, fmt.Errorf("reading the ID token's claims: %w", err)
	}
	a := admin{Subject: idt.Subject, Email: claims.Email}
	if idt.Subject == "" || a.Email == "" {
		return a, errors.New("the ID token has no subject or no email")
	}
	if v := string(claims.EmailVerified); v != "true" && v != `"true"` {
		return a, fmt.Errorf("the identity provider has not verified %s", a.Email)
	}
	if g, ok := all[rp.groups]; ok {
		if err := json.Unmarshal(g, &a.Groups); err != nil {
			return a, fmt.Errorf("the ID token's claim %q is not a list of strings", rp.groups)
		}
	}
	if !slices.ContainsFunc(a.Groups, func(g string) bool { return slices.Contains(rp.cfg.AdminGroups, g) }) {
		return a, errNotAdmin
	}
	return a, nil
}
