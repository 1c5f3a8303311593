// Package ca is certmesh's certificate authority service: state on disk,
// enrollment with one-time tokens, renewal over mTLS, device records and
// revocation. Signing goes through an embedded smallstep authority.
package ca

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/strictjson"
)

// Duration is a time.Duration that reads and writes as "24h0m0s" in JSON.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Config is the server's configuration, written by init to STATE/config.json
// and loaded once at start.
type Config struct {
	TrustDomain certs.TrustDomain `json:"trust_domain"`
	OverlayV4   netip.Prefix      `json:"overlay_ipv4"`
	OverlayV6   netip.Prefix      `json:"overlay_ipv6"`
	// MachineCertLifetime is the life of a machine certificate (default 24h).
	MachineCertLifetime Duration `json:"machine_cert_lifetime"`
	// RenewAfterExpiry is how long after its machine certificate expired
	// a device may still renew with its keys alone (device key and
	// WireGuard key over a CA nonce), say after a CA outage longer than a
	// certificate's life (default 7 days, at most 30 days). A revoked
	// device never renews.
	RenewAfterExpiry Duration `json:"renew_after_expiry,omitempty"`
	// TokenTTL is the default life of an enrollment token.
	TokenTTL Duration `json:"token_ttl"`
	// MaxTokenTTL is the longest life a token may be given with
	// `tokens create --ttl` (default DefaultMaxTokenTTL, 30 days); a
	// longer one is refused.
	MaxTokenTTL Duration `json:"max_token_ttl,omitempty"`
	// Listen is the default listen address of `run`.
	Listen string `json:"listen"`
	// CoordinatorURL is given to agents; empty means "the same server".
	CoordinatorURL string `json:"coordinator_url,omitempty"`
	// CRLNextUpdate is how long each CRL is current (default 5m).
	CRLNextUpdate Duration `json:"crl_next_update,omitempty"`
	// CertBackdate is how long before its issuance a machine or user
	// certificate starts (default 5m, between 1m and 1h; at most half the
	// certificate's life), so that agents whose clocks are that far
	// behind the CA's accept it.
	CertBackdate Duration `json:"cert_backdate,omitempty"`
	// PolicyValidity is how long each signing of the policy is current
	// (its valid-until; default policy.DefaultValidity, 1h). The CA signs
	// the current version again at half of it.
	PolicyValidity Duration `json:"policy_validity,omitempty"`
	// CRLListen, if set, also serves the current CRL over plain HTTP at
	// http://<CRLListen>/crl for other tools.
	CRLListen string `json:"crl_http_listen,omitempty"`
	// Approval is "required" to hold every new enrollment until an admin
	// approves it (certmesh-server devices pending|approve|deny); empty
	// or "none" issues at once.
	Approval ApprovalMode `json:"approval,omitempty"`
	// TPM configures TPM enrollment (manufacturer roots, TPM-only).
	TPM *TPMConfig `json:"tpm,omitempty"`
	// OIDC, if set, enables user login through the organisation's
	// identity provider (certmesh login).
	OIDC *OIDCConfig `json:"oidc,omitempty"`
	// RateLimit bounds the requests of each client address to the public
	// CA endpoints (default RateLimitConfig defaults; see ratelimit.go).
	RateLimit *RateLimitConfig `json:"rate_limit,omitempty"`
	// Relay configures the embedded TURN relay and STUN server (on by
	// default) and the standalone relays agents may use (see relay.go).
	Relay *RelayConfig `json:"relay,omitempty"`
	// AutoApprove pre-approves routes and services per tag (the key, a
	// tag without "tag:"), see AutoApproval.
	AutoApprove map[string]AutoApproval `json:"auto_approve,omitempty"`
	// Store is where the CA's records live: empty for the embedded store
	// (certmesh.db in the state directory, the default), or a PostgreSQL
	// URL (postgres://user:password@host/db?sslmode=verify-full). The
	// transparency log stays in the state directory either way, so one
	// state directory goes with one database (see state.go openStore).
	Store string `json:"store,omitempty"`
}

// ApprovalMode says whether new enrollments wait for an admin.
type ApprovalMode string

// The approval modes.
const (
	ApprovalNone     ApprovalMode = "none"
	ApprovalRequired ApprovalMode = "required"
)

// Defaults for a new deployment.
const (
	DefaultOverlayV4       = "100.80.0.0/16"
	DefaultMachineLifetime = 24 * time.Hour
	DefaultTokenTTL        = 24 * time.Hour
	// DefaultMaxTokenTTL is max_token_ttl when unset.
	DefaultMaxTokenTTL = 30 * 24 * time.Hour
	DefaultListen      = "127.0.0.1:8443"
	minMachineLifetime = 2 * time.Minute
	maxMachineLifetime = 30 * 24 * time.Hour
	// DefaultRenewAfterExpiry is renew_after_expiry when unset.
	DefaultRenewAfterExpiry = 7 * 24 * time.Hour
	maxRenewAfterExpiry     = 30 * 24 * time.Hour
	configFile              = "config.json"
)

// maxTokenTTL is max_token_ttl or its default.
func (c *Config) maxTokenTTL() time.Duration {
	if c.MaxTokenTTL != 0 {
		return time.Duration(c.MaxTokenTTL)
	}
	return DefaultMaxTokenTTL
}

// Validate checks a configuration.
func (c *Config) Validate() error {
	if _, err := certs.ParseTrustDomain(string(c.TrustDomain)); err != nil {
		return err
	}
	if !c.OverlayV4.IsValid() || !c.OverlayV4.Addr().Is4() || c.OverlayV4.Bits() > 24 {
		return fmt.Errorf("overlay_ipv4 %q: want an IPv4 prefix of /24 or larger", c.OverlayV4)
	}
	if !c.OverlayV6.IsValid() || !c.OverlayV6.Addr().Is6() || c.OverlayV6.Bits() > 64 {
		return fmt.Errorf("overlay_ipv6 %q: want an IPv6 prefix of /64 or larger", c.OverlayV6)
	}
	if err := c.validateAutoApprove(); err != nil {
		return err
	}
	if c.Store != "" && !store.IsPostgresURL(c.Store) {
		return fmt.Errorf("store %q: want empty (the embedded store) or a postgres:// URL", store.Redacted(c.Store))
	}
	lt := time.Duration(c.MachineCertLifetime)
	if lt < minMachineLifetime || lt > maxMachineLifetime {
		return fmt.Errorf("machine_cert_lifetime %s: want between %s and %s", lt, minMachineLifetime, maxMachineLifetime)
	}
	if c.TokenTTL <= 0 {
		return fmt.Errorf("token_ttl must be positive")
	}
	if c.MaxTokenTTL < 0 || time.Duration(c.TokenTTL) > c.maxTokenTTL() {
		return fmt.Errorf("max_token_ttl %s: want positive and at least token_ttl %s", c.maxTokenTTL(), time.Duration(c.TokenTTL))
	}
	if w := time.Duration(c.RenewAfterExpiry); w != 0 && (w < time.Minute || w > maxRenewAfterExpiry) {
		return fmt.Errorf("renew_after_expiry %s: want between 1m and %s", w, maxRenewAfterExpiry)
	}
	if c.CRLNextUpdate != 0 && (time.Duration(c.CRLNextUpdate) < 10*time.Second || time.Duration(c.CRLNextUpdate) > 7*24*time.Hour) {
		return fmt.Errorf("crl_next_update %s: want between 10s and 7 days", time.Duration(c.CRLNextUpdate))
	}
	if b := time.Duration(c.CertBackdate); b != 0 && (b < minCertBackdate || b > maxCertBackdate) {
		return fmt.Errorf("cert_backdate %s: want between %s and %s", b, minCertBackdate, maxCertBackdate)
	}
	if c.PolicyValidity != 0 && (time.Duration(c.PolicyValidity) < 10*time.Second || time.Duration(c.PolicyValidity) > 30*24*time.Hour) {
		return fmt.Errorf("policy_validity %s: want between 10s and 30 days", time.Duration(c.PolicyValidity))
	}
	switch c.Approval {
	case "", ApprovalNone, ApprovalRequired:
	default:
		return fmt.Errorf("approval %q: want %q or %q", c.Approval, ApprovalNone, ApprovalRequired)
	}
	if c.OIDC != nil {
		if err := c.OIDC.Validate(); err != nil {
			return err
		}
	}
	if err := c.RateLimit.Validate(); err != nil {
		return err
	}
	crl := DefaultCRLNextUpdate
	if c.CRLNextUpdate != 0 {
		crl = time.Duration(c.CRLNextUpdate)
	}
	return c.Relay.Validate(crl)
}

// RenewalAfterExpiry is the renew_after_expiry window (its default if unset).
func (c *Config) RenewalAfterExpiry() time.Duration {
	if c.RenewAfterExpiry == 0 {
		return DefaultRenewAfterExpiry
	}
	return time.Duration(c.RenewAfterExpiry)
}

// Overlays returns the overlay ranges.
func (c *Config) Overlays() []netip.Prefix { return []netip.Prefix{c.OverlayV4, c.OverlayV6} }

// LoadConfig reads STATE/config.json.
func LoadConfig(stateDir string) (*Config, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, configFile))
	if err != nil {
		return nil, fmt.Errorf("reading server config: %w", err)
	}
	var c Config
	// Strict: a misspelled key ("aproval") would otherwise leave its
	// setting silently at the default.
	if err := strictjson.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(stateDir, configFile), err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", configFile, err)
	}
	return &c, nil
}

func writeConfig(stateDir string, c *Config) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, configFile), append(data, '\n'), 0o600)
}
