package oidctest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/certmesh/certmesh/internal/oidctest"
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

func TestAuthCodeFlowWithPKCE(t *testing.T) {
	p := oidctest.New(t)
	p.AddClient(clientID, clientSecret, callback)
	p.AddUser(alice)
	r := newRP(t, p, clientID, clientSecret)

	raw, tok := r.login(t, p, "alice@example.com", alice.Password, "n-0001")
	idt, err := r.verifier.Verify(r.ctx, raw)
	if err != nil {
		t.Fatalf("go-oidc rejected the ID token: %v", err)
	}
	if idt.Issuer != p.Issuer() || idt.Subject != "u-alice" || idt.Nonce != "n-0001" ||
		!slices.Equal(idt.Audience, []string{clientID}) {
		t.Errorf("id token: iss=%s sub=%s nonce=%s aud=%v", idt.Issuer, idt.Subject, idt.Nonce, idt.Audience)
	}
	if d := time.Until(idt.Expiry); d < 50*time.Minute || d > 61*time.Minute {
		t.Errorf("expiry in %v, want about an hour", d)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.Email != alice.Email || c.EmailVerified == nil || !*c.EmailVerified || !slices.Equal(c.Groups, alice.Groups) {
		t.Errorf("claims %+v", c)
	}

	// Userinfo with the access token.
	ui, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uc idClaims
	if err := ui.Claims(&uc); err != nil {
		t.Fatal(err)
	}
	if ui.Subject != "u-alice" || ui.Email != alice.Email || !ui.EmailVerified || !slices.Equal(uc.Groups, alice.Groups) {
		t.Errorf("userinfo %+v %+v", ui, uc)
	}

	// What the provider saw: PKCE S256 and the nonce.
	reqs := p.AuthRequests()
	if len(reqs) != 1 || reqs[0].CodeChallengeMethod != "S256" || reqs[0].CodeChallenge == "" ||
		reqs[0].Nonce != "n-0001" || reqs[0].ClientID != clientID || reqs[0].RedirectURI != callback {
		t.Errorf("auth requests %+v", reqs)
	}
	if got := p.IssuedIDTokens(); len(got) != 1 || got[0] != raw {
		t.Errorf("IssuedIDTokens = %d tokens", len(got))
	}
}

func TestAuthCodeRefusals(t *testing.T) {
	p := oidctest.New(t)
	p.AddClient(clientID, clientSecret, callback)
	p.AddUser(alice)
	r := newRP(t, p, clientID, clientSecret)

	t.Run("wrong password", func(t *testing.T) {
		_, err := p.Login(r.ctx, r.oauth.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice@example.com", "nope")
		if err == nil || !strings.Contains(err.Error(), "invalid username or password") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		_, err := p.Login(r.ctx, r.oauth.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "mallory@example.com", "x")
		if err == nil {
			t.Fatal("unknown user logged in")
		}
	})
	t.Run("PKCE required", func(t *testing.T) {
		redirect, err := p.Login(r.ctx, r.oauth.AuthCodeURL("s1"), "alice@example.com", alice.Password)
		if err != nil {
			t.Fatal(err)
		}
		if redirect.Query().Get("error") != "invalid_request" || redirect.Query().Get("code") != "" {
			t.Fatalf("redirect %s", redirect)
		}
	})
	t.Run("unregistered redirect URI", func(t *testing.T) {
		o := r.oauth
		o.RedirectURL = "https://evil.example/cb"
		_, err := p.Login(r.ctx, o.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice@example.com", alice.Password)
		if err == nil {
			t.Fatal("provider redirected to an unregistered URI")
		}
	})
	t.Run("wrong code verifier and code replay", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		redirect, err := p.Login(r.ctx, r.oauth.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), "alice@example.com", alice.Password)
		if err != nil {
			t.Fatal(err)
		}
		code := redirect.Query().Get("code")
		if _, err := r.oauth.Exchange(r.ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
			t.Fatal("exchange with the wrong code_verifier succeeded")
		}
		if _, err := r.oauth.Exchange(r.ctx, code, oauth2.VerifierOption(v)); err != nil {
			t.Fatalf("exchange: %v", err)
		}
		if _, err := r.oauth.Exchange(r.ctx, code, oauth2.VerifierOption(v)); err == nil {
			t.Fatal("code exchanged twice")
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		redirect, err := p.Login(r.ctx, r.oauth.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), "alice@example.com", alice.Password)
		if err != nil {
			t.Fatal(err)
		}
		o := r.oauth
		o.ClientSecret = "wrong"
		if _, err := o.Exchange(r.ctx, redirect.Query().Get("code"), oauth2.VerifierOption(v)); err == nil {
			t.Fatal("exchange with a wrong client secret succeeded")
		}
	})
}

func TestPublicClientAndGroupsClaimName(t *testing.T) {
	p := oidctest.New(t, oidctest.WithGroupsClaim("roles"), oidctest.WithIDTokenLifetime(5*time.Minute),
		oidctest.WithClient("cli", "", callback), oidctest.WithUser(alice))
	r := newRP(t, p, "cli", "")
	raw, _ := r.login(t, p, "alice@example.com", alice.Password, "n-pub")
	idt, err := r.verifier.Verify(r.ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.Groups != nil || !slices.Equal(c.Roles, alice.Groups) {
		t.Errorf("claims %+v, want groups under \"roles\"", c)
	}
	if d := time.Until(idt.Expiry); d > 5*time.Minute {
		t.Errorf("expiry in %v, want at most 5m", d)
	}
}

func TestUnverifiedEmailUser(t *testing.T) {
	p := oidctest.New(t)
	p.AddClient(clientID, clientSecret, callback)
	bob := oidctest.User{Subject: "u-bob", Username: "bob", Email: "bob@example.com", Password: "pw"}
	p.AddUser(bob)
	r := newRP(t, p, clientID, clientSecret)
	raw, _ := r.login(t, p, "bob", "pw", "n-bob")
	idt, err := r.verifier.Verify(r.ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.EmailVerified == nil || *c.EmailVerified {
		t.Errorf("email_verified = %v, want an explicit false", c.EmailVerified)
	}
	if c.Groups != nil {
		t.Errorf("groups %v for a user without groups", c.Groups)
	}
}

func TestMintIDToken(t *testing.T) {
	p := oidctest.New(t)
	p.AddUser(alice)
	r := newRP(t, p, clientID, clientSecret)

	good := p.ValidClaims(clientID, "u-alice", "n1")
	idt, err := r.verifier.Verify(r.ctx, p.MintIDToken(good, oidctest.KeyReal))
	if err != nil {
		t.Fatalf("valid minted token rejected: %v", err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil || c.Email != alice.Email || !slices.Equal(c.Groups, alice.Groups) || idt.Nonce != "n1" {
		t.Errorf("claims %+v nonce %q err %v", c, idt.Nonce, err)
	}

	with := func(k string, v any) map[string]any {
		c := p.ValidClaims(clientID, "u-alice", "n1")
		c[k] = v
		return c
	}
	for _, tc := range []struct {
		name   string
		claims map[string]any
		key    oidctest.Key
	}{
		{"rogue key", good, oidctest.KeyRogue},
		{"rogue key with the real kid", good, oidctest.KeyRogueSameKID},
		{"alg none", good, oidctest.KeyNone},
		{"wrong issuer", with("iss", "https://evil.example"), oidctest.KeyReal},
		{"wrong audience", with("aud", []string{"other-client"}), oidctest.KeyReal},
		{"expired", with("exp", time.Now().Add(-time.Minute).Unix()), oidctest.KeyReal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.verifier.Verify(r.ctx, p.MintIDToken(tc.claims, tc.key)); err == nil {
				t.Fatal("go-oidc accepted the token")
			} else {
				t.Logf("rejected: %v", err)
			}
		})
	}
}

func TestAttacksThroughTokenEndpoint(t *testing.T) {
	p := oidctest.New(t)
	p.AddClient(clientID, clientSecret, callback)
	p.AddUser(alice)
	r := newRP(t, p, clientID, clientSecret)

	for _, tc := range []struct {
		name   string
		attack oidctest.Attack
		// check inspects a token go-oidc accepted; nil means go-oidc must refuse it.
		check func(*oidc.IDToken) bool
	}{
		{name: "wrong issuer", attack: oidctest.Attack{Issuer: "https://evil.example"}},
		{name: "wrong audience", attack: oidctest.Attack{Audience: []string{"someone-else"}}},
		{name: "expired", attack: oidctest.Attack{Expired: true}},
		{name: "rogue key", attack: oidctest.Attack{Key: oidctest.KeyRogue}},
		{name: "rogue key same kid", attack: oidctest.Attack{Key: oidctest.KeyRogueSameKID}},
		{name: "alg none", attack: oidctest.Attack{Key: oidctest.KeyNone}},
		{name: "missing nonce", attack: oidctest.Attack{DropNonce: true},
			check: func(idt *oidc.IDToken) bool { return idt.Nonce == "" }},
		{name: "wrong nonce", attack: oidctest.Attack{Nonce: "n-other"},
			check: func(idt *oidc.IDToken) bool { return idt.Nonce == "n-other" }},
		{name: "email unverified", attack: oidctest.Attack{EmailUnverified: true},
			check: func(idt *oidc.IDToken) bool {
				var c idClaims
				return idt.Claims(&c) == nil && c.EmailVerified != nil && !*c.EmailVerified
			}},
		{name: "claims", attack: oidctest.Attack{Claims: map[string]any{"groups": []string{"admins"}, "email": nil}},
			check: func(idt *oidc.IDToken) bool {
				var c idClaims
				return idt.Claims(&c) == nil && c.Email == "" && slices.Equal(c.Groups, []string{"admins"})
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.SetAttack(tc.attack)
			defer p.SetAttack(oidctest.Attack{})
			raw, _ := r.login(t, p, "alice@example.com", alice.Password, "n-"+strings.ReplaceAll(tc.name, " ", "-"))
			idt, err := r.verifier.Verify(r.ctx, raw)
			switch {
			case tc.check == nil && err == nil:
				t.Fatal("go-oidc accepted the tampered token")
			case tc.check == nil:
				t.Logf("rejected: %v", err)
			case err != nil:
				t.Fatalf("go-oidc rejected: %v", err)
			case !tc.check(idt):
				t.Fatal("tampering not visible in the verified token")
			}
		})
	}

	t.Run("token response fields", func(t *testing.T) {
		p.SetAttack(oidctest.Attack{Response: map[string]any{"refresh_expires_in": 1800}})
		defer p.SetAttack(oidctest.Attack{})
		raw, tok := r.login(t, p, "alice@example.com", alice.Password, "n-resp")
		if _, err := r.verifier.Verify(r.ctx, raw); err != nil {
			t.Fatalf("ID token no longer valid: %v", err)
		}
		if v, ok := tok.Extra("refresh_expires_in").(float64); !ok || v != 1800 {
			t.Fatalf("refresh_expires_in = %v", tok.Extra("refresh_expires_in"))
		}
	})

	t.Run("replayed ID token", func(t *testing.T) {
		// Another login's token (valid, but for nonce "n-old") instead of this one's.
		p.SetAttack(oidctest.Attack{Response: map[string]any{"id_token": p.MintIDToken(p.ValidClaims(clientID, "u-alice", "n-old"), oidctest.KeyReal)}})
		defer p.SetAttack(oidctest.Attack{})
		raw, _ := r.login(t, p, "alice@example.com", alice.Password, "n-new")
		idt, err := r.verifier.Verify(r.ctx, raw)
		if err != nil {
			t.Fatalf("a validly signed replayed token must pass go-oidc itself: %v", err)
		}
		if idt.Nonce != "n-old" {
			t.Fatalf("nonce %q: replay not delivered", idt.Nonce)
		}
	})

	// Honest again.
	raw, _ := r.login(t, p, "alice@example.com", alice.Password, "n-honest")
	if _, err := r.verifier.Verify(r.ctx, raw); err != nil {
		t.Fatalf("honest token rejected after attacks: %v", err)
	}
}

func TestDeviceFlow(t *testing.T) {
	p := oidctest.New(t)
	p.AddClient(clientID, clientSecret) // no redirect URI needed
	p.AddUser(alice)
	r := newRP(t, p, clientID, clientSecret)

	da, err := r.oauth.DeviceAuth(r.ctx)
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	if da.UserCode == "" || da.DeviceCode == "" || !strings.HasPrefix(da.VerificationURI, p.Issuer()+"/") ||
		!strings.Contains(da.VerificationURIComplete, url.QueryEscape(da.UserCode)) || da.Interval != 1 {
		t.Fatalf("device authorization response %+v", da)
	}
	// The verification page exists.
	resp, err := p.HTTPClient().Get(da.VerificationURIComplete)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), da.UserCode) {
		t.Fatalf("verification page: %s", resp.Status)
	}

	if err := p.DeviceLogin(r.ctx, da.UserCode, "alice@example.com", "wrong", true); err == nil {
		t.Fatal("device approved with a wrong password")
	}
	go func() {
		time.Sleep(1500 * time.Millisecond) // let the device poll while pending first
		if err := p.ApproveDevice(context.Background(), strings.ToLower(da.UserCode), "alice@example.com"); err != nil {
			t.Errorf("ApproveDevice: %v", err)
		}
	}()
	tok, err := r.oauth.DeviceAccessToken(r.ctx, da)
	if err != nil {
		t.Fatalf("device access token: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.verifier.Verify(r.ctx, raw)
	if err != nil {
		t.Fatalf("go-oidc rejected the device ID token: %v", err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != "u-alice" || c.Email != alice.Email || c.EmailVerified == nil || !*c.EmailVerified || !slices.Equal(c.Groups, alice.Groups) {
		t.Errorf("device ID token: sub=%s %+v", idt.Subject, c)
	}
	if err := p.ApproveDevice(r.ctx, da.UserCode, "alice@example.com"); err == nil {
		t.Error("a used user code was approved again")
	}

	// Denied.
	da2, err := r.oauth.DeviceAuth(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.DenyDevice(r.ctx, da2.UserCode, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	_, err = r.oauth.DeviceAccessToken(r.ctx, da2)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "access_denied" {
		t.Fatalf("denied device: err = %v", err)
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
