package oidctest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/certmesh/certmesh/tstest/oidctest"
)

const (
	clientID     = "certmesh-ca"
	clientSecret = "s3cret"
	callback     = "https://127.0.0.1:8443/sso/callback"
)

var alice = oidctest.User{
	Subject:       "u-alice",
	Email:         "alice@example.com",
	EmailVerified: true,
	Name:          "Alice",
	Groups:        []string{"eng", "ops"},
	Password:      "correct horse",
}

// rp is a generic relying party built from go-oidc and x/oauth2, the way
// the CA is meant to be.
type rp struct {
	ctx      context.Context
	provider *oidc.Provider
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
}

func newRP(t *testing.T, p *oidctest.Provider, id, secret string) *rp {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Context(context.Background()), 30*time.Second)
	t.Cleanup(cancel)
	prov, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return &rp{
		ctx:      ctx,
		provider: prov,
		oauth: oauth2.Config{
			ClientID:     id,
			ClientSecret: secret,
			Endpoint:     prov.Endpoint(),
			RedirectURL:  callback,
			Scopes:       []string{oidc.ScopeOpenID, "email", "profile", "groups"},
		},
		verifier: prov.Verifier(&oidc.Config{ClientID: id}),
	}
}

type idClaims struct {
	Email         string   `json:"email"`
	EmailVerified *bool    `json:"email_verified"`
	Groups        []string `json:"groups"`
	Roles         []string `json:"roles"`
}

// login runs the authorization code flow with PKCE through the provider's
// login page and returns the raw ID token from the token endpoint.
func (r *rp) login(t *testing.T, p *oidctest.Provider, user, password, nonce string) (string, *oauth2.Token) {
	t.Helper()
	state := "st-" + nonce
	verifier := oauth2.GenerateVerifier()
	authURL := r.oauth.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	redirect, err := p.Login(r.ctx, authURL, user, password)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if got := redirect.Scheme + "://" + redirect.Host + redirect.Path; got != callback {
		t.Fatalf("redirected to %s, want %s", got, callback)
	}
	q := redirect.Query()
	if e := q.Get("error"); e != "" {
		t.Fatalf("provider answered error=%s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != state {
		t.Fatalf("state %q, want %q", q.Get("state"), state)
	}
	tok, err := r.oauth.Exchange(r.ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("no id_token in token response")
	}
	return raw, tok
}

func TestDiscoveryAndJWKS(t *testing.T) {
	p := oidctest.New(t)
	r := newRP(t, p, clientID, clientSecret)

	var meta struct {
		Issuer        string   `json:"issuer"`
		JWKS          string   `json:"jwks_uri"`
		Authorization string   `json:"authorization_endpoint"`
		Token         string   `json:"token_endpoint"`
		Userinfo      string   `json:"userinfo_endpoint"`
		Device        string   `json:"device_authorization_endpoint"`
		PKCE          []string `json:"code_challenge_methods_supported"`
		Grants        []string `json:"grant_types_supported"`
		Algs          []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := r.provider.Claims(&meta); err != nil {
		t.Fatal(err)
	}
	if meta.Issuer != p.Issuer() || !strings.HasPrefix(p.Issuer(), "https://127.0.0.1:") {
		t.Errorf("issuer %q / %q", meta.Issuer, p.Issuer())
	}
	for name, ep := range map[string]string{"jwks": meta.JWKS, "authorization": meta.Authorization,
		"token": meta.Token, "userinfo": meta.Userinfo, "device": meta.Device} {
		if !strings.HasPrefix(ep, p.Issuer()+"/") {
			t.Errorf("%s endpoint %q not under the issuer", name, ep)
		}
	}
	if !slices.Contains(meta.PKCE, "S256") {
		t.Errorf("code_challenge_methods_supported = %v", meta.PKCE)
	}
	if !slices.Contains(meta.Grants, "urn:ietf:params:oauth:grant-type:device_code") {
		t.Errorf("grant_types_supported = %v", meta.Grants)
	}
	if !slices.Equal(meta.Algs, []string{"RS256"}) {
		t.Errorf("id_token_signing_alg_values_supported = %v", meta.Algs)
	}
	if r.provider.Endpoint().DeviceAuthURL != meta.Device {
		t.Errorf("go-oidc device endpoint %q", r.provider.Endpoint().DeviceAuthURL)
	}

	resp, err := p.HTTPClient().Get(meta.JWKS)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jwks struct {
		Keys []struct {
			Kty, Kid, Alg, Use string
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil {
		t.Fatal(err)
	}
	if len(jwks.Keys) != 1 || jwks.Keys[0].Kty != "RSA" || jwks.Keys[0].Use != "sig" || jwks.Keys[0].Kid == "" {
		t.Errorf("jwks = %+v", jwks)
	}

	// CAFile holds the root a relying party configured with a CA file needs.
	pool := x509.NewCertPool()
	if pemData, err := os.ReadFile(p.CAFile()); err != nil || !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("CAFile: %v", err)
	}
	fromFile := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if _, err := oidc.NewProvider(oidc.ClientContext(r.ctx, fromFile), p.Issuer()); err != nil {
		t.Errorf("discovery trusting CAFile: %v", err)
	}

	// The TLS certificate is trusted only through the fixture.
	if _, err := http.Get(p.Issuer() + "/.well-known/openid-configuration"); err == nil {
		t.Error("default client trusted the provider's throwaway CA")
	}
}

func TestDownAndRestart(t *testing.T) {
	p := oidctest.New(t)
	p.AddClient(clientID, clientSecret, callback)
	p.AddUser(alice)
	r := newRP(t, p, clientID, clientSecret)
	raw, _ := r.login(t, p, "alice@example.com", alice.Password, "n-before")

	p.SetDown(true)
	if _, err := oidc.NewProvider(r.ctx, p.Issuer()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("discovery while down: %v", err)
	}
	if _, err := p.Login(r.ctx, r.oauth.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice@example.com", alice.Password); err == nil {
		t.Fatal("login while down succeeded")
	}
	p.SetDown(false)

	p.Stop()
	_, err := oidc.NewProvider(r.ctx, p.Issuer())
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("discovery while stopped: %v", err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	// Same issuer, same keys: a verifier from before the outage still works,
	// on tokens from before and after it.
	raw2, _ := r.login(t, p, "alice@example.com", alice.Password, "n-after")
	for _, tok := range []string{raw, raw2} {
		if _, err := r.verifier.Verify(r.ctx, tok); err != nil {
			t.Fatalf("verify after restart: %v", err)
		}
	}
	if _, err := oidc.NewProvider(r.ctx, p.Issuer()); err != nil {
		t.Fatalf("discovery after restart: %v", err)
	}
}
