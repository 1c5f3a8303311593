package ca

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
)

// MaxTokenBatch is the most tokens one `tokens create --count` makes.
const MaxTokenBatch = 1000

// TokenState says what became of an enrollment token.
type TokenState string

// The token states.
const (
	TokenUnused  TokenState = "unused"
	TokenUsed    TokenState = "used"
	TokenExpired TokenState = "expired"
	TokenRevoked TokenState = "revoked"
)

// TokenInfo is what the admin sees of a token: never its secret or hash.
type TokenInfo struct {
	ID        string         `json:"id"`
	State     TokenState     `json:"state"`
	Tags      []certs.Tag    `json:"tags,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	ExpiresAt time.Time      `json:"expires_at"`
	UsedAt    time.Time      `json:"used_at,omitzero"`
	UsedBy    certs.DeviceID `json:"used_by,omitempty"`
	RevokedAt time.Time      `json:"revoked_at,omitzero"`
}

// tokenInfo describes tok as of now.
func tokenInfo(tok store.Token, now time.Time) TokenInfo {
	st := TokenUnused
	switch {
	case !tok.UsedAt.IsZero():
		st = TokenUsed
	case !tok.RevokedAt.IsZero():
		st = TokenRevoked
	case now.After(tok.ExpiresAt):
		st = TokenExpired
	}
	return TokenInfo{ID: tok.ID, State: st, Tags: tok.Tags, CreatedAt: tok.CreatedAt, ExpiresAt: tok.ExpiresAt,
		UsedAt: tok.UsedAt, UsedBy: tok.UsedBy, RevokedAt: tok.RevokedAt}
}

// tokenTTL is the life a new token gets for the asked ttl (0: the
// configured default), refused above max_token_ttl.
func (c *CA) tokenTTL(ttl time.Duration) (time.Duration, error) {
	if ttl < 0 {
		return 0, refuse(CodeBadRequest, "ttl %s is negative", ttl)
	}
	if ttl == 0 {
		ttl = time.Duration(c.cfg.TokenTTL)
	}
	if max := c.cfg.maxTokenTTL(); ttl > max {
		return 0, refuse(CodeBadRequest, "ttl %s is longer than the maximum token life %s (max_token_ttl in config.json)", ttl, max)
	}
	return ttl, nil
}

// CreateTokens makes count one-time enrollment tokens with the same tags
// and life, all in one transaction: all of them or none.
func (c *CA) CreateTokens(ctx context.Context, tags []certs.Tag, ttl time.Duration, count int) ([]string, []store.Token, error) {
	if count < 1 || count > MaxTokenBatch {
		return nil, nil, refuse(CodeBadRequest, "count %d: want between 1 and %d", count, MaxTokenBatch)
	}
	ttl, err := c.tokenTTL(ttl)
	if err != nil {
		return nil, nil, err
	}
	now := c.now()
	secrets := make([]string, count)
	recs := make([]store.Token, count)
	for i := range recs {
		if secrets[i], recs[i], err = newToken(tags, now, ttl); err != nil {
			return nil, nil, err
		}
	}
	err = c.store.Update(ctx, func(tx store.Tx) error {
		for _, r := range recs {
			if err := tx.PutToken(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("storing tokens: %w", err)
	}
	for _, r := range recs {
		c.log.Info("enrollment token created", "token", r.ID, "tags", r.Tags, "expires", r.ExpiresAt, "by", AdminPeerOf(ctx))
	}
	return secrets, recs, nil
}

// Tokens lists every enrollment token, oldest first.
func (c *CA) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var toks []store.Token
	err := c.store.View(ctx, func(tx store.Tx) (err error) { toks, err = tx.ListTokens(); return err })
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	now := c.now()
	out := make([]TokenInfo, len(toks))
	for i, t := range toks {
		out[i] = tokenInfo(t, now)
	}
	return out, nil
}

// RevokeToken revokes an unused token: it enrolls nothing after. A used
// token is refused (revoke the device it enrolled instead); revoking a
// revoked token again changes nothing.
func (c *CA) RevokeToken(ctx context.Context, id string) (TokenInfo, error) {
	var tok store.Token
	err := c.store.Update(ctx, func(tx store.Tx) (err error) {
		tok, err = tx.GetToken(id)
		if errors.Is(err, store.ErrNotFound) {
			return refuse(CodeNotFound, "no token %q", id)
		} else if err != nil {
			return err
		}
		if !tok.UsedAt.IsZero() {
			return refuse(CodeBadRequest, "token %s was already used by device %s at %s: revoke the device instead", id, tok.UsedBy, tok.UsedAt.UTC().Format(time.RFC3339))
		}
		if !tok.RevokedAt.IsZero() {
			return nil
		}
		tok.RevokedAt = c.now()
		return tx.PutToken(tok)
	})
	if err != nil {
		return TokenInfo{}, fmt.Errorf("revoking token: %w", err)
	}
	c.log.Info("enrollment token revoked", "token", id, "by", AdminPeerOf(ctx))
	return tokenInfo(tok, c.now()), nil
}
