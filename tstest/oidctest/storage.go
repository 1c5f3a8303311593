package oidctest

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is the in-memory op.Storage (plus op.DeviceAuthorizationStorage)
// behind the fixture. It holds clients, users, pending authorization
// requests, codes, access tokens and device authorizations. Everything is
// guarded by one mutex; the fixture serves a handful of requests per test.
type storage struct {
	mu sync.Mutex

	groupsClaim   string
	requirePKCE   bool
	idTokenTTL    time.Duration
	accessTTL     time.Duration
	signing       *rsaKey
	clients       map[string]*client
	users         map[string]*User // by subject
	authRequests  map[string]*authRequest
	codes         map[string]string // code -> auth request id
	accessTokens  map[string]*accessToken
	deviceCodes   map[string]*deviceEntry // device code -> entry
	userCodes     map[string]string       // user code -> device code
	seenAuthorize []AuthRequestInfo
}

var (
	_ op.Storage                    = (*storage)(nil)
	_ op.DeviceAuthorizationStorage = (*storage)(nil)
)

func newStorage(signing *rsaKey) *storage {
	return &storage{
		groupsClaim:  "groups",
		requirePKCE:  true,
		idTokenTTL:   time.Hour,
		accessTTL:    10 * time.Minute,
		signing:      signing,
		clients:      map[string]*client{},
		users:        map[string]*User{},
		authRequests: map[string]*authRequest{},
		codes:        map[string]string{},
		accessTokens: map[string]*accessToken{},
		deviceCodes:  map[string]*deviceEntry{},
		userCodes:    map[string]string{},
	}
}

func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// ---- clients ----

// client is an op.Client. A client with a secret is a confidential web
// client (client_secret_basic or client_secret_post); one without is a
// public native client, for which the library itself insists on PKCE.
type client struct {
	id           string
	secret       string
	redirectURIs []string
	idTokenTTL   time.Duration
}

func (c *client) GetID() string                    { return c.id }
func (c *client) RedirectURIs() []string           { return slices.Clone(c.redirectURIs) }
func (c *client) PostLogoutRedirectURIs() []string { return nil }
func (c *client) ApplicationType() op.ApplicationType {
	if c.secret == "" {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.secret == "" {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeDeviceCode}
}
func (c *client) LoginURL(id string) string            { return loginPath + "?authRequestID=" + id }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration       { return c.idTokenTTL }
func (c *client) DevMode() bool                        { return false }
func (c *client) IsScopeAllowed(string) bool           { return true } // "groups" and other custom scopes pass
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true } // email etc. in the ID token itself
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (s *storage) addClient(c *client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.id] = c
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("oidctest: unknown client %q", id)
	}
	cc := *c
	cc.idTokenTTL = s.idTokenTTL
	return &cc, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok || c.secret == "" || subtle.ConstantTimeCompare([]byte(c.secret), []byte(secret)) != 1 {
		return errors.New("oidctest: invalid client credentials")
	}
	return nil
}

// ---- users ----

func (s *storage) addUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := u
	cp.Groups = slices.Clone(u.Groups)
	s.users[u.Subject] = &cp
}

// userByLogin finds a user by login name: Username, else Email, else Subject.
func (s *storage) userByLogin(name string) (*User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		if u.loginName() == name {
			cp := *u
			return &cp, true
		}
	}
	return nil, false
}

func (s *storage) checkPassword(name, password string) (*User, error) {
	u, ok := s.userByLogin(name)
	if !ok || subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) != 1 {
		return nil, errors.New("invalid username or password")
	}
	return u, nil
}

// setUserinfo fills in the claims of user sub that the scopes grant: the
// subject always; email and email_verified (explicitly, even when false) for
// "email"; name and preferred_username for "profile"; the groups claim and
// the user's extra claims always.
func (s *storage) setUserinfo(info *oidc.UserInfo, sub string, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[sub]
	if !ok {
		return fmt.Errorf("oidctest: unknown user %q", sub)
	}
	info.Subject = u.Subject
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeEmail:
			info.Email = u.Email
			info.EmailVerified = oidc.Bool(u.EmailVerified)
			// The library drops email_verified=false (omitempty); a relying
			// party must see the explicit false.
			info.AppendClaims("email_verified", u.EmailVerified)
		case oidc.ScopeProfile:
			info.Name = u.Name
			info.PreferredUsername = u.loginName()
		}
	}
	if len(u.Groups) > 0 {
		info.AppendClaims(s.groupsClaim, slices.Clone(u.Groups))
	}
	for k, v := range u.Claims {
		info.AppendClaims(k, v)
	}
	return nil
}

func (s *storage) SetUserinfoFromScopes(_ context.Context, info *oidc.UserInfo, userID, _ string, scopes []string) error {
	return s.setUserinfo(info, userID, scopes)
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	t, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || t.subject != subject {
		return errors.New("oidctest: invalid access token")
	}
	if time.Now().After(t.expires) {
		return errors.New("oidctest: access token expired")
	}
	return s.setUserinfo(info, t.subject, t.scopes)
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	s.mu.Lock()
	t, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || t.subject != subject || time.Now().After(t.expires) || !slices.Contains(t.audience, clientID) {
		return errors.New("oidctest: token inactive")
	}
	info := new(oidc.UserInfo)
	if err := s.setUserinfo(info, t.subject, t.scopes); err != nil {
		return err
	}
	resp.SetUserInfo(info)
	resp.Scope = t.scopes
	resp.ClientID = t.clientID
	resp.Expiration = oidc.FromTime(t.expires)
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("oidctest: JWT profile grant not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("oidctest: JWT profile grant not supported")
}

func (s *storage) Health(context.Context) error { return nil }
