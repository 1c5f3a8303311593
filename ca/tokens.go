package ca

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
)

const tokenPrefix = "cm1."

// CreateToken makes a one-time enrollment token. The returned string is the
// only copy of its secret: the store keeps a hash.
func (c *CA) CreateToken(ctx context.Context, tags []certs.Tag, ttl time.Duration) (string, store.Token, error) {
	secrets, recs, err := c.CreateTokens(ctx, tags, ttl, 1)
	if err != nil {
		return "", store.Token{}, err
	}
	return secrets[0], recs[0], nil
}

// newToken makes a token record and its secret (not stored).
func newToken(tags []certs.Tag, now time.Time, ttl time.Duration) (string, store.Token, error) {
	var id [8]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", store.Token{}, fmt.Errorf("generating token: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", store.Token{}, fmt.Errorf("generating token: %w", err)
	}
	tok := store.Token{
		ID:         hex.EncodeToString(id[:]),
		SecretHash: sha256.Sum256(secret[:]),
		Tags:       tags,
		CreatedAt:  now,
		ExpiresAt:  now.Add(ttl),
	}
	return tokenPrefix + tok.ID + "." + base64.RawURLEncoding.EncodeToString(secret[:]), tok, nil
}

// redeemToken checks a presented token inside tx and marks it used by dev.
func (c *CA) redeemToken(tx store.Tx, presented string, dev certs.DeviceID) (store.Token, error) {
	if presented == "" {
		return store.Token{}, refuse(CodeBadToken, "enrollment token is missing")
	}
	rest, ok := strings.CutPrefix(presented, tokenPrefix)
	id, secretB64, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return store.Token{}, refuse(CodeBadToken, "enrollment token is malformed")
	}
	secret, err := base64.RawURLEncoding.DecodeString(secretB64)
	if err != nil || len(secret) != 32 {
		return store.Token{}, refuse(CodeBadToken, "enrollment token is malformed")
	}
	tok, err := tx.GetToken(id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Token{}, refuse(CodeBadToken, "enrollment token is unknown")
	} else if err != nil {
		return store.Token{}, fmt.Errorf("looking up token: %w", err)
	}
	got := sha256.Sum256(secret)
	if subtle.ConstantTimeCompare(got[:], tok.SecretHash[:]) != 1 {
		return store.Token{}, refuse(CodeBadToken, "enrollment token is unknown")
	}
	if !tok.RevokedAt.IsZero() && tok.UsedAt.IsZero() {
		return store.Token{}, refuse(CodeTokenRevoked, "enrollment token was revoked at %s", tok.RevokedAt.UTC().Format(time.RFC3339))
	}
	if !tok.UsedAt.IsZero() {
		return store.Token{}, refuse(CodeTokenUsed, "enrollment token was already used at %s", tok.UsedAt.UTC().Format(time.RFC3339))
	}
	if c.now().After(tok.ExpiresAt) {
		return store.Token{}, refuse(CodeTokenExpired, "enrollment token expired at %s", tok.ExpiresAt.UTC().Format(time.RFC3339))
	}
	tok.UsedAt, tok.UsedBy = c.now(), dev
	if err := tx.PutToken(tok); err != nil {
		return store.Token{}, err
	}
	return tok, nil
}

// enrolledAgainLocked is the idempotent retry of an enrollment whose
// answer was lost (the CA committed it, then crashed or the connection
// dropped): redeemErr says the token was already used, and the device that
// used it is active and holds the very keys the request proved (the CSR is
// signed by the device key, the WireGuard key signed a fresh nonce). That
// device is returned, to be answered with its certificate; anything else
// keeps the refusal.
func enrolledAgainLocked(tx store.Tx, presented string, cr *checkedRequest, redeemErr error) (store.Device, bool) {
	var e *Error
	if !errors.As(redeemErr, &e) || e.Reason != CodeTokenUsed {
		return store.Device{}, false
	}
	id, _, _ := strings.Cut(strings.TrimPrefix(presented, tokenPrefix), ".")
	tok, err := tx.GetToken(id)
	if err != nil || tok.UsedBy == "" {
		return store.Device{}, false
	}
	dev, err := tx.GetDevice(tok.UsedBy)
	if err != nil || dev.State != store.DeviceActive || dev.WireGuardKey != cr.wgKey || dev.DeviceKeyFP != cr.deviceFP {
		return store.Device{}, false
	}
	return dev, true
}
