package oidctest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Key chooses what signs a token minted by MintIDToken or rewritten by an
// Attack.
type Key int

const (
	// KeyReal is the provider's signing key, published in its JWKS.
	KeyReal Key = iota
	// KeyRogue is an RSA key that is not in the JWKS, under its own key ID.
	KeyRogue
	// KeyRogueSameKID is that rogue key under the real key's key ID: the
	// signature does not verify with the published key of that ID.
	KeyRogueSameKID
	// KeyNone is the unsigned JWT, alg "none".
	KeyNone
)

// Attack makes the token endpoint hand out bad ID tokens: each ID token the
// provider issues (authorization code and device grants alike) is decoded,
// changed as the non-zero fields say, and signed again with Key. The zero
// Attack is an honest provider. The access token and the rest of the token
// response are left alone unless Response says otherwise.
type Attack struct {
	Issuer          string         // replaces "iss"
	Audience        []string       // replaces "aud" when non-nil
	Expired         bool           // "exp" an hour ago, "iat" two hours ago
	DropNonce       bool           // removes "nonce"
	Nonce           string         // replaces "nonce"
	EmailUnverified bool           // "email_verified": false
	Claims          map[string]any // sets these claims; a nil value removes the claim
	Key             Key            // what signs the result

	// Response sets these top-level fields of the token response itself (a
	// nil value removes the field), for example "refresh_expires_in" as
	// Keycloak sends it, or "id_token": nil for a response without one.
	Response map[string]any
}

// rewritesIDToken reports whether a changes the ID token.
func (a Attack) rewritesIDToken() bool {
	return a.Issuer != "" || a.Audience != nil || a.Expired || a.DropNonce || a.Nonce != "" ||
		a.EmailUnverified || len(a.Claims) > 0 || a.Key != KeyReal
}

func (a Attack) apply(c map[string]any) {
	if a.Issuer != "" {
		c["iss"] = a.Issuer
	}
	if a.Audience != nil {
		c["aud"] = a.Audience
	}
	if a.Expired {
		now := time.Now()
		c["exp"] = now.Add(-time.Hour).Unix()
		c["iat"] = now.Add(-2 * time.Hour).Unix()
	}
	if a.DropNonce {
		delete(c, "nonce")
	}
	if a.Nonce != "" {
		c["nonce"] = a.Nonce
	}
	if a.EmailUnverified {
		c["email_verified"] = false
	}
	for k, v := range a.Claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
}

// SetAttack changes how the token endpoint tampers with the ID tokens it
// issues from now on; SetAttack(Attack{}) makes it honest again.
func (p *Provider) SetAttack(a Attack) {
	if a.Audience != nil {
		a.Audience = slices.Clone(a.Audience)
	}
	a.Claims = maps.Clone(a.Claims)
	a.Response = maps.Clone(a.Response)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attack = a
}

func (p *Provider) currentAttack() Attack {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attack
}

// ValidClaims returns the claims of a valid ID token for the user with
// subject sub, issued now to clientID with nonce (omitted if empty): iss,
// sub, aud, azp, iat, exp, auth_time, nonce, email, email_verified, name,
// the groups claim and the user's extra claims. Change them and pass them to
// MintIDToken. An unknown subject gives just the registered claims.
func (p *Provider) ValidClaims(clientID, sub, nonce string) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss":       p.issuer,
		"sub":       sub,
		"aud":       []string{clientID},
		"azp":       clientID,
		"iat":       now.Unix(),
		"auth_time": now.Unix(),
		"exp":       now.Add(p.store.idTokenTTLNow()).Unix(),
	}
	if nonce != "" {
		c["nonce"] = nonce
	}
	p.store.mu.Lock()
	u, ok := p.store.users[sub]
	if ok {
		if u.Email != "" {
			c["email"] = u.Email
			c["email_verified"] = u.EmailVerified
		}
		if u.Name != "" {
			c["name"] = u.Name
		}
		if len(u.Groups) > 0 {
			c[p.store.groupsClaim] = append([]string(nil), u.Groups...)
		}
		for k, v := range u.Claims {
			c[k] = v
		}
	}
	p.store.mu.Unlock()
	return c
}

func (s *storage) idTokenTTLNow() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idTokenTTL
}

// MintIDToken signs claims as a compact JWT with key, outside any flow: for
// feeding a relying party's verifier directly. Start from ValidClaims.
// It fails the test on error, so call it from the test goroutine.
func (p *Provider) MintIDToken(claims map[string]any, key Key) string {
	p.t.Helper()
	tok, err := p.sign(claims, key)
	if err != nil {
		p.t.Fatalf("oidctest: MintIDToken: %v", err)
	}
	return tok
}

func (p *Provider) sign(claims map[string]any, key Key) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	var priv any
	var kid string
	switch key {
	case KeyReal:
		priv, kid = p.store.signing.key, p.store.signing.id
	case KeyRogue:
		priv, kid = p.rogue.key, p.rogue.id
	case KeyRogueSameKID:
		priv, kid = p.rogue.key, p.store.signing.id
	case KeyNone:
		enc := base64.RawURLEncoding
		return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(payload) + ".", nil
	default:
		return "", fmt.Errorf("unknown key %d", key)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: priv, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// decodeClaims reads the payload of a compact JWT without checking it.
func decodeClaims(raw string) (map[string]any, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var c map[string]any
	if err := d.Decode(&c); err != nil {
		return nil, err
	}
	return c, nil
}

// serveToken runs the library's token endpoint, records the ID token it
// issues and applies the current Attack to it.
func (p *Provider) serveToken(w http.ResponseWriter, r *http.Request, next http.Handler) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()

	if rec.Code == http.StatusOK {
		if out, err := p.rewriteTokenResponse(body); err == nil {
			body = out
		} else {
			rec.Code = http.StatusInternalServerError
			body = []byte(`{"error":"server_error","error_description":"oidctest: ` + strings.ReplaceAll(err.Error(), `"`, `'`) + `"}`)
		}
	}
	h := w.Header()
	for k, v := range rec.Header() {
		h[k] = v
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

func (p *Provider) rewriteTokenResponse(body []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var resp map[string]any
	if err := d.Decode(&resp); err != nil {
		return body, nil // not JSON: pass through untouched
	}
	a := p.currentAttack()
	changed := false
	raw, _ := resp["id_token"].(string)
	if raw != "" && a.rewritesIDToken() {
		claims, err := decodeClaims(raw)
		if err != nil {
			return nil, err
		}
		a.apply(claims)
		if raw, err = p.sign(claims, a.Key); err != nil {
			return nil, err
		}
		resp["id_token"] = raw
		changed = true
	}
	for k, v := range a.Response {
		if v == nil {
			delete(resp, k)
		} else {
			resp[k] = v
		}
		changed = true
	}
	if changed {
		var err error
		if body, err = json.Marshal(resp); err != nil {
			return nil, err
		}
	}
	if raw, _ := resp["id_token"].(string); raw != "" {
		p.mu.Lock()
		p.issued = append(p.issued, raw)
		p.mu.Unlock()
	}
	return body, nil
}
