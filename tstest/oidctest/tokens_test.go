package oidctest_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/certmesh/certmesh/tstest/oidctest"
)

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
