package oidctest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/certmesh/certmesh/tstest/oidctest"
)

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
