// Package agent is the certmesh node agent: it enrolls with the CA, joins
// the coordinator, verifies every peer's certificate itself and only then
// configures it as a WireGuard peer, with key and addresses taken from the
// certificate. It imports neither the CA nor the coordinator.
package agent

import (
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"time"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
)

// Config is the agent's configuration, built once from flags.
type Config struct {
	StateDir        string
	ServerURL       *url.URL
	RootFingerprint certs.Fingerprint
	Token           string // needed only for the first enrollment
	// TokenFile is where Token was read from ("" if not from a file):
	// named when the agent is not enrolled and the file is missing.
	TokenFile string
	Hostname  certs.Hostname
	// ControlGroup may use the local API besides the agent's user ("":
	// root only); see ResolveControlGroup.
	ControlGroup string

	Mode          wgdev.Mode
	InterfaceName string // kernel mode
	SOCKS5Addr    string // userspace mode: listen address of the SOCKS5 proxy ("" = none)
	ListenPort    int    // WireGuard UDP port (0 = random)
	// AdvertiseAddrs are the underlay addresses peers should send to (with
	// the WireGuard port); empty means the addresses of the host's
	// interfaces, without loopback and the tunnel.
	AdvertiseAddrs []netip.Addr
	// STUNServers are asked, from the WireGuard socket, for this agent's
	// server-reflexive address, which it advertises as a candidate.
	STUNServers []netip.AddrPort
	// NoRelay turns the TURN relay client off. By default the agent asks
	// the CA for relay credentials, keeps an allocation on its nearest
	// relay, advertises the relayed address and uses the relays' UDP
	// ports as STUN servers too; a CA that offers no relay means none.
	NoRelay bool
	// DNS configures the resolver for the trust domain (names_serve.go).
	DNS DNSConfig

	// Routes and services (routes.go, asks.go). AdvertiseRoutes and
	// AdvertiseServices are asked for in every enrollment and renewal;
	// the CA certifies those an admin approved. AcceptRoutes installs
	// the routes peers are certified for (off by default). A router
	// forwards its certified routes and masquerades what it forwards
	// unless NoSNATRoutes.
	AdvertiseRoutes   []netip.Prefix
	AdvertiseServices []certs.Service
	AcceptRoutes      bool
	NoSNATRoutes      bool
	// ExitNode, a hostname or device ID, sends all traffic (0.0.0.0/0,
	// ::/0) through that peer if its certificate makes it an exit node
	// (exitnode.go; kernel TUN mode only). The default routes into the
	// tunnel stay while it is unreachable or gone: nothing leaves
	// outside it. ExitNodeAllowLAN keeps this host's own subnets direct.
	ExitNode         string
	ExitNodeAllowLAN bool

	// TPM, if set, keeps the device key in a TPM 2.0 and enrolls with
	// TPM attestation.
	TPM *TPMConfig
	// AllowUnlogged accepts peers whose certificates come without a valid
	// inclusion proof in the CA's transparency log (require_logged off).
	// The default, false, requires it.
	AllowUnlogged bool
	// CRLGrace is how long past its nextUpdate a CRL may be before it is
	// stale (default 10m); CRLStalePolicy says what happens then
	// (default DegradedKeep).
	CRLGrace       time.Duration
	CRLStalePolicy DegradedPolicy
	// LogAlarmPolicy says what happens to new peers once the transparency
	// log showed two histories (a split view or an inconsistent tree: the
	// log key signed both), until the agent restarts (default DegradedKeep).
	LogAlarmPolicy DegradedPolicy
	// PolicyStalePolicy says what happens to new peers while the policy
	// held is past its valid-until (neither the CA nor the coordinator
	// delivers a newer signing): DegradedKeep (default) keeps enforcing
	// it and accepting peers, DegradedRefuseNew enforces it and accepts no
	// new peer until a current signing arrives.
	PolicyStalePolicy DegradedPolicy
	// CAFetchInterval is how often the CRL and the policy are fetched from
	// the CA itself, jittered by ±10% (default DefaultCAFetchInterval):
	// the bound on how long a coordinator that withholds them can delay a
	// revocation or a policy while the CA is reachable.
	CAFetchInterval time.Duration
	// UnlistedGrace is how long a verified peer the coordinator stopped
	// listing (it "left", or a snapshot lacks it) is kept before it is
	// removed (default DefaultUnlistedGrace; negative: at once). The
	// coordinator's word is no signed reason: a coordinator that restarted
	// has not heard from the peer yet. Revocation, expiry and policy still
	// take effect at once.
	UnlistedGrace time.Duration
	// ApprovalPoll is how often a pending enrollment is polled (default 2s).
	ApprovalPoll time.Duration
	// MaxClockSkew is how far this machine's clock may be behind the CA's
	// for certificates to be accepted before their NotBefore (default
	// DefaultMaxClockSkew, at most certs.MaxNotBeforeSkew; NotAfter gets
	// no tolerance), and beyond which, either way, the agent warns.
	MaxClockSkew time.Duration
	// SweepInterval is how often expired peers are looked for (default 1s).
	SweepInterval time.Duration
	// RenewCheckInterval is how often the renewal loop reads the clock
	// again while it waits (default 1m), so that a certificate that
	// expired while the machine slept is renewed soon after it wakes.
	RenewCheckInterval time.Duration
	Logger             *slog.Logger
	Now                func() time.Time
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	if c.StateDir == "" {
		return fmt.Errorf("state directory is required")
	}
	if c.ServerURL == nil || c.ServerURL.Scheme != "https" || c.ServerURL.Host == "" {
		return fmt.Errorf("server URL must be https://host:port")
	}
	if c.Mode != wgdev.KernelTUN && c.Mode != wgdev.Userspace {
		return fmt.Errorf("mode must be kernel TUN or userspace")
	}
	if c.Mode == wgdev.KernelTUN && c.InterfaceName == "" {
		c.InterfaceName = "certmesh0"
	}
	if err := certs.CheckRoutes(c.AdvertiseRoutes, nil); err != nil {
		return fmt.Errorf("advertised routes: %w", err)
	}
	if err := certs.CheckServices(c.AdvertiseServices); err != nil {
		return fmt.Errorf("advertised services: %w", err)
	}
	if c.ExitNode != "" && c.Mode != wgdev.KernelTUN {
		return fmt.Errorf("--exit-node needs kernel TUN mode")
	}
	if c.CRLGrace <= 0 {
		c.CRLGrace = 10 * time.Minute
	}
	if c.CRLStalePolicy == "" {
		c.CRLStalePolicy = DegradedKeep
	}
	if _, err := ParseDegradedPolicy(string(c.CRLStalePolicy)); err != nil {
		return fmt.Errorf("stale CRL %w", err)
	}
	if c.LogAlarmPolicy == "" {
		c.LogAlarmPolicy = DegradedKeep
	}
	if _, err := ParseDegradedPolicy(string(c.LogAlarmPolicy)); err != nil {
		return fmt.Errorf("log alarm %w", err)
	}
	if c.PolicyStalePolicy == "" {
		c.PolicyStalePolicy = DegradedKeep
	}
	if _, err := ParseDegradedPolicy(string(c.PolicyStalePolicy)); err != nil {
		return fmt.Errorf("stale policy %w", err)
	}
	if c.CAFetchInterval <= 0 {
		c.CAFetchInterval = DefaultCAFetchInterval
	}
	if c.UnlistedGrace == 0 {
		c.UnlistedGrace = DefaultUnlistedGrace
	}
	if c.ApprovalPoll <= 0 {
		c.ApprovalPoll = 2 * time.Second
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = DefaultMaxClockSkew
	}
	if c.MaxClockSkew < 0 || c.MaxClockSkew > certs.MaxNotBeforeSkew {
		return fmt.Errorf("max clock skew %s: want between 0 and %s", c.MaxClockSkew, certs.MaxNotBeforeSkew)
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Second
	}
	if c.RenewCheckInterval <= 0 {
		c.RenewCheckInterval = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
