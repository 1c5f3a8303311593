package ca

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// relyingParty is the CA's side of OpenID Connect: discovery, the
// authorization code flow with PKCE, the device authorization grant, and
// every check on the ID token. Discovery is retried on each login, so a
// provider that is down at start-up (or later) makes logins fail with a
// clear error while the CA keeps serving everything else.
type relyingParty struct {
	cfg    OIDCConfig
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	provider *oidc.Provider
}

func newRelyingParty(cfg OIDCConfig, log *slog.Logger, now func() time.Time) (*relyingParty, error) {
	cfg = cfg.withDefaults()
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
	return &relyingParty{cfg: cfg, client: &http.Client{Transport: tr, Timeout: 15 * time.Second}, log: log, now: now}, nil
}

// ctx carries the provider's HTTP client to go-oidc and oauth2.
func (rp *relyingParty) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, rp.client)
}

// discover returns the provider, reading discovery if it has not yet
// succeeded.
func (rp *relyingParty) discover(ctx context.Context) (*oidc.Provider, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.provider != nil {
		return rp.provider, nil
	}
	p, err := oidc.NewProvider(rp.ctx(ctx), rp.cfg.Issuer)
	if err != nil {
		return nil, refuse(CodeIdPUnavailable, "identity provider %s is unavailable (discovery failed): %v", rp.cfg.Issuer, err)
	}
	rp.provider = p
	return p, nil
}

func (rp *relyingParty) oauth(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{
		ClientID: rp.cfg.ClientID, ClientSecret: rp.cfg.ClientSecret,
		Endpoint: p.Endpoint(), RedirectURL: rp.cfg.RedirectURL, Scopes: rp.cfg.Scopes,
	}
}

// authURL is where the user's browser goes to log in for this session.
func (rp *relyingParty) authURL(ctx context.Context, s *loginSession) (string, error) {
	p, err := rp.discover(ctx)
	if err != nil {
		return "", err
	}
	return rp.oauth(p).AuthCodeURL(s.state, oidc.Nonce(s.nonce), oauth2.S256ChallengeOption(s.verifier)), nil
}

// exchange redeems an authorization code (with the session's PKCE
// verifier) and verifies the ID token it yields.
func (rp *relyingParty) exchange(ctx context.Context, s *loginSession, code string) (verifiedUser, error) {
	p, err := rp.discover(ctx)
	if err != nil {
		return verifiedUser{}, err
	}
	tok, err := rp.oauth(p).Exchange(rp.ctx(ctx), code, oauth2.VerifierOption(s.verifier))
	if err != nil {
		return verifiedUser{}, tokenEndpointError(rp.cfg.Issuer, err)
	}
	return rp.verifyToken(ctx, p, tok, s.nonce)
}

// startDevice begins a device authorization grant (RFC 8628).
func (rp *relyingParty) startDevice(ctx context.Context) (*oauth2.DeviceAuthResponse, error) {
	p, err := rp.discover(ctx)
	if err != nil {
		return nil, err
	}
	if p.Endpoint().DeviceAuthURL == "" {
		return nil, refuse(CodeBadRequest, "identity provider %s does not offer the device authorization grant", rp.cfg.Issuer)
	}
	da, err := rp.oauth(p).DeviceAuth(rp.ctx(ctx))
	if err != nil {
		return nil, tokenEndpointError(rp.cfg.Issuer, err)
	}
	return da, nil
}

// pollDevice waits for the user to approve a device authorization and
// verifies the ID token. Device flow ID tokens carry no nonce (RFC 8628
// has no place for one); the device code, known only to the CA, binds the
// result to this session instead.
func (rp *relyingParty) pollDevice(ctx context.Context, da *oauth2.DeviceAuthResponse) (verifiedUser, error) {
	p, err := rp.discover(ctx)
	if err != nil {
		return verifiedUser{}, err
	}
	tok, err := rp.oauth(p).DeviceAccessToken(rp.ctx(ctx), da)
	if err != nil {
		return verifiedUser{}, tokenEndpointError(rp.cfg.Issuer, err)
	}
	return rp.verifyToken(ctx, p, tok, "")
}

func tokenEndpointError(issuer string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := re.ErrorCode
		if re.ErrorDescription != "" {
			msg += ": " + re.ErrorDescription
		}
		if msg == "" {
			msg = fmt.Sprintf("HTTP %d", re.Response.StatusCode)
		}
		return refuse(CodeBadIDToken, "identity provider refused the token request: %s", msg)
	}
	return refuse(CodeIdPUnavailable, "identity provider %s is unavailable (token endpoint): %v", issuer, err)
}

// verifiedUser is what the CA learnt from a verified ID token.
type verifiedUser struct {
	Issuer, Subject string
	Email           string
	Groups          []string
	// SessionEnds is when the provider says the login session ends (zero
	// if it does not say).
	SessionEnds time.Time
	// TokenHash identifies the ID token, to refuse its reuse.
	TokenHash string
}

// verifyToken checks the ID token in tok: signature against the
// provider's JWKS, issuer, audience, expiry (go-oidc), then the nonce,
// email_verified, and the allowed domains and groups.
func (rp *relyingParty) verifyToken(ctx context.Context, p *oidc.Provider, tok *oauth2.Token, nonce string) (verifiedUser, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return verifiedUser{}, refuse(CodeBadIDToken, "identity provider returned no ID token (is the openid scope allowed for this client?)")
	}
	u, err := rp.verifyIDToken(ctx, p, raw, nonce)
	if err != nil {
		return u, err
	}
	if v, ok := tok.Extra("refresh_expires_in").(float64); ok && v > 0 {
		ends := rp.now().Add(time.Duration(v) * time.Second)
		if u.SessionEnds.IsZero() || ends.Before(u.SessionEnds) {
			u.SessionEnds = ends
		}
	}
	return u, nil
}

func (rp *relyingParty) verifyIDToken(ctx context.Context, p *oidc.Provider, raw, nonce string) (verifiedUser, error) {
	v := p.Verifier(&oidc.Config{ClientID: rp.cfg.ClientID, Now: rp.now})
	idt, err := v.Verify(rp.ctx(ctx), raw)
	if err != nil {
		return verifiedUser{}, classifyIDTokenError(err)
	}
	if err := checkSubject(idt.Subject); err != nil {
		return verifiedUser{}, err
	}
	if nonce != "" && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		if idt.Nonce == "" {
			return verifiedUser{}, refuse(CodeBadIDToken, "ID token has no nonce; this login sent one")
		}
		return verifiedUser{}, refuse(CodeBadIDToken, "ID token nonce does not match this login (a token from another login or device)")
	}
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return verifiedUser{}, refuse(CodeBadIDToken, "ID token claims: %v", err)
	}
	u := verifiedUser{Issuer: idt.Issuer, Subject: idt.Subject}
	sum := sha256.Sum256([]byte(raw))
	u.TokenHash = hex.EncodeToString(sum[:])
	if err := json.Unmarshal(claims["email"], &u.Email); err != nil || u.Email == "" {
		return u, refuse(CodeBadIDToken, "ID token has no email claim (request the email scope)")
	}
	if !emailVerified(claims["email_verified"]) {
		return u, refuse(CodeLoginRefused, "the identity provider has not verified %s (email_verified is not true)", u.Email)
	}
	if g, ok := claims[rp.cfg.GroupsClaim]; ok {
		if err := json.Unmarshal(g, &u.Groups); err != nil {
			return u, refuse(CodeBadIDToken, "ID token claim %q is not a list of strings", rp.cfg.GroupsClaim)
		}
	}
	var sessExp int64
	if json.Unmarshal(claims["session_expires_at"], &sessExp) == nil && sessExp > 0 {
		u.SessionEnds = time.Unix(sessExp, 0)
	}
	return u, rp.allowed(u)
}

// allowed applies the domain and group restrictions.
func (rp *relyingParty) allowed(u verifiedUser) error {
	at := strings.LastIndexByte(u.Email, '@')
	if at < 0 {
		return refuse(CodeBadIDToken, "email claim %q is not an address", u.Email)
	}
	domain := strings.ToLower(u.Email[at+1:])
	if len(rp.cfg.AllowedDomains) > 0 && !slices.Contains(rp.cfg.AllowedDomains, domain) {
		return refuse(CodeLoginRefused, "%s: the domain %s is not allowed (allowed: %s)", u.Email, domain, strings.Join(rp.cfg.AllowedDomains, ", "))
	}
	if len(rp.cfg.AllowedGroups) > 0 && !slices.ContainsFunc(u.Groups, func(g string) bool { return slices.Contains(rp.cfg.AllowedGroups, g) }) {
		return refuse(CodeLoginRefused, "%s is in none of the allowed groups (%s); the provider says: [%s]", u.Email,
			strings.Join(rp.cfg.AllowedGroups, ", "), sample(u.Groups))
	}
	return nil
}

// emailVerified reads email_verified, which some providers send as a
// string.
func emailVerified(raw json.RawMessage) bool {
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b
	}
	var s string
	return json.Unmarshal(raw, &s) == nil && s == "true"
}

// classifyIDTokenError turns go-oidc's verification errors into messages
// that say what was wrong.
func classifyIDTokenError(err error) error {
	var exp *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &exp):
		return refuse(CodeBadIDToken, "ID token expired at %s", exp.Expiry.UTC().Format(time.RFC3339))
	case strings.Contains(msg, "issued by a different provider"):
		return refuse(CodeBadIDToken, "ID token has the wrong issuer: %v", err)
	case strings.Contains(msg, "expected audience"):
		return refuse(CodeBadIDToken, "ID token is for another client (wrong audience): %v", err)
	case strings.Contains(msg, "signature"):
		return refuse(CodeBadIDToken, "ID token signature does not verify against the provider's published keys: %v", err)
	default:
		return refuse(CodeBadIDToken, "ID token does not verify: %v", err)
	}
}
