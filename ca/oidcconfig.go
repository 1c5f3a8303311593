package ca

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// OIDCConfig makes the CA a relying party of the organisation's OpenID
// Provider, for user certificates (certmesh login). Every discovery-based
// provider works: Okta, Google Workspace, Entra ID, Keycloak, Dex, …
type OIDCConfig struct {
	// Issuer is the provider's issuer URL; discovery is read from
	// Issuer + "/.well-known/openid-configuration".
	Issuer       string `json:"issuer"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"` // config.json is 0600
	// RedirectURL is the CA's callback as registered at the provider:
	// https://<ca-host>:<port>/v1/login/callback.
	RedirectURL string `json:"redirect_url"`
	// Scopes requested; "openid" is always added. Default: openid email profile.
	Scopes []string `json:"scopes,omitempty"`
	// GroupsClaim is the ID token claim that lists the user's groups
	// (default "groups").
	GroupsClaim string `json:"groups_claim,omitempty"`
	// AllowedDomains, if not empty, are the only email domains accepted.
	AllowedDomains []string `json:"allowed_domains,omitempty"`
	// AllowedGroups, if not empty: the user must be in at least one. A user
	// certificate carries at most certs.MaxGroups groups: of a user in more,
	// it keeps these and the groups the current policy names.
	AllowedGroups []string `json:"allowed_groups,omitempty"`
	// AdminGroups, if not empty, turns on the web console under /admin/ on
	// the server's HTTPS port (server/console): only a user the provider
	// puts in one of these groups may sign in to it. The provider must
	// also accept the console's callback, RedirectURL's scheme and host
	// with the path /admin/callback.
	AdminGroups []string `json:"admin_groups,omitempty"`
	// UserCertLifetime is the life of a user certificate (default 12h). It
	// is shortened to the provider's session when the token says when that
	// ends (the "session_expires_at" claim, or refresh_expires_in in the
	// token response, as Keycloak sends).
	UserCertLifetime Duration `json:"user_cert_lifetime,omitempty"`
	// RequireApproval holds a new user's first login until an admin runs
	// `certmesh-server users approve`.
	RequireApproval bool `json:"require_approval,omitempty"`
	// CAFile is an optional PEM file of roots for the provider's TLS
	// certificate (a private provider); the system roots otherwise.
	CAFile string `json:"ca_file,omitempty"`
}

// Defaults of the OIDC settings.
const (
	DefaultUserCertLifetime = 12 * time.Hour
	DefaultGroupsClaim      = "groups"
	minUserCertLifetime     = time.Minute
	maxUserCertLifetime     = 7 * 24 * time.Hour
)

// withDefaults fills in the defaults.
func (o OIDCConfig) withDefaults() OIDCConfig {
	if len(o.Scopes) == 0 {
		o.Scopes = []string{"openid", "email", "profile"}
	}
	if !slices.Contains(o.Scopes, "openid") {
		o.Scopes = append([]string{"openid"}, o.Scopes...)
	}
	if o.GroupsClaim == "" {
		o.GroupsClaim = DefaultGroupsClaim
	}
	if o.UserCertLifetime == 0 {
		o.UserCertLifetime = Duration(DefaultUserCertLifetime)
	}
	for i, d := range o.AllowedDomains {
		o.AllowedDomains[i] = strings.ToLower(strings.TrimPrefix(d, "@"))
	}
	return o
}

// Validate checks the OIDC settings.
func (o OIDCConfig) Validate() error {
	u, err := url.Parse(o.Issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("oidc.issuer %q: want an https URL", o.Issuer)
	}
	if o.ClientID == "" {
		return fmt.Errorf("oidc.client_id is empty")
	}
	r, err := url.Parse(o.RedirectURL)
	if err != nil || r.Scheme != "https" || r.Host == "" {
		return fmt.Errorf("oidc.redirect_url %q: want the https URL of this CA's callback (…%s)", o.RedirectURL, "/v1/login/callback")
	}
	lt := time.Duration(o.withDefaults().UserCertLifetime)
	if lt < minUserCertLifetime || lt > maxUserCertLifetime {
		return fmt.Errorf("oidc.user_cert_lifetime %s: want between %s and %s", lt, minUserCertLifetime, maxUserCertLifetime)
	}
	for _, d := range o.AllowedDomains {
		if d == "" || strings.ContainsAny(d, "@ /") {
			return fmt.Errorf("oidc.allowed_domains: %q is not a domain", d)
		}
	}
	for _, g := range o.AdminGroups {
		if strings.TrimSpace(g) == "" || g != strings.TrimSpace(g) {
			return fmt.Errorf("oidc.admin_groups: %q is not a group name", g)
		}
	}
	for _, g := range o.AllowedGroups {
		if _, err := certs.ParseGroup(g); err != nil {
			return fmt.Errorf("oidc.allowed_groups: %w", err)
		}
	}
	return nil
}
