package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/certmesh/certmesh/internal/relaycred"
	"github.com/certmesh/certmesh/internal/wire"
)

// RelayKeyFile holds the relay master key (0600): every relay's key is
// derived from it and the relay's name (relaycred.DeriveKey). It never
// leaves the CA's state directory; a standalone relay gets only its own
// derived key (certmesh-server relay-key).
const RelayKeyFile = "relay.key"

// EmbeddedRelayName is the name (and key derivation label) of the relay
// that certmesh-server run embeds.
const EmbeddedRelayName = "server"

// Defaults of the embedded relay: the TURN/STUN port of RFC 8489, and the
// next one for netcheck's second STUN port.
const (
	DefaultRelayUDPPort    = 3478
	DefaultRelayUDPAltPort = 3479
)

// RelayConfig configures the relay certmesh-server run embeds (by default)
// and the standalone relays agents are told about.
type RelayConfig struct {
	// Disabled turns the embedded relay (and its STUN) off.
	Disabled bool `json:"disabled,omitempty"`
	// UDPListen and UDPAltListen are where the embedded relay serves TURN
	// and STUN over UDP (default: the host of listen, ports 3478 and 3479;
	// a default port that is taken falls back to a free one, with a
	// warning, since agents learn the ports from the CA). TURN over TLS is
	// served on the HTTPS port itself (ALPN stun.turn).
	UDPListen    string `json:"udp_listen,omitempty"`
	UDPAltListen string `json:"udp_alt_listen,omitempty"`
	// PublicIP is the IPv4 address peers send relayed datagrams to (in
	// every allocation). Default: the host of udp_listen if it is a
	// specific address, else the host's first global unicast IPv4.
	PublicIP netip.Addr `json:"public_ip,omitzero"`
	// PublicHost is the host agents are told to reach the embedded relay
	// at (default: the host name the agent reached the CA at).
	PublicHost string `json:"public_host,omitempty"`
	// CredentialLifetime is how long relay credentials last (default and
	// maximum: crl_next_update, so that a revoked device loses relay access
	// within the CRL interval even at a relay the CA cannot reach).
	CredentialLifetime Duration `json:"credential_lifetime,omitempty"`
	// DenyPeers are further peer ranges relayed datagrams may not go to
	// (the relay host itself, loopback, link-local and multicast are
	// always refused).
	DenyPeers []netip.Prefix `json:"deny_peers,omitempty"`
	// Relays are standalone relays (certmesh-server run --role relay) that
	// agents also get credentials for.
	Relays []StandaloneRelay `json:"relays,omitempty"`
}

// StandaloneRelay is a relay run apart (--role relay): its name (its key
// is derived from it) and the addresses agents reach it at.
type StandaloneRelay struct {
	Name   string `json:"name"`
	UDP    string `json:"udp"`
	UDPAlt string `json:"udp_alt,omitempty"`
	TLS    string `json:"tls,omitempty"`
}

var relayNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Validate checks the relay settings against the CRL interval crl.
func (r *RelayConfig) Validate(crl time.Duration) error {
	if r == nil {
		return nil
	}
	if lt := time.Duration(r.CredentialLifetime); lt != 0 && (lt < 10*time.Second || lt > crl) {
		return fmt.Errorf("relay.credential_lifetime %s: want between 10s and crl_next_update (%s), so that revocation ends relay access within the CRL interval", lt, crl)
	}
	if r.PublicIP.IsValid() && !r.PublicIP.Unmap().Is4() {
		return fmt.Errorf("relay.public_ip %s: want an IPv4 address", r.PublicIP)
	}
	if len(r.Relays) > wire.MaxRelays-1 {
		return fmt.Errorf("relay.relays: %d relays, at most %d", len(r.Relays), wire.MaxRelays-1)
	}
	seen := map[string]bool{EmbeddedRelayName: true}
	for _, s := range r.Relays {
		if !relayNameRE.MatchString(s.Name) || seen[s.Name] {
			return fmt.Errorf("relay.relays: name %q: want a distinct DNS label other than %q", s.Name, EmbeddedRelayName)
		}
		seen[s.Name] = true
		for _, a := range []string{s.UDP, s.UDPAlt, s.TLS} {
			if _, _, err := net.SplitHostPort(a); a != "" && err != nil {
				return fmt.Errorf("relay.relays %s: address %q: want host:port", s.Name, a)
			}
		}
		if s.UDP == "" && s.TLS == "" {
			return fmt.Errorf("relay.relays %s: give its udp or tls address", s.Name)
		}
	}
	return nil
}

// relayState is the master key and the embedded relay's ports.
type relayState struct {
	master relaycred.Key

	mu               sync.Mutex
	udpPort, altPort int // 0: no embedded relay running
}

// loadRelayKey reads STATE/relay.key, creating it for a state directory
// from before relays.
func loadRelayKey(stateDir string) (relaycred.Key, error) {
	p := filepath.Join(stateDir, RelayKeyFile)
	k, err := relaycred.ReadKeyFile(p)
	if errors.Is(err, os.ErrNotExist) {
		if k, err = relaycred.NewKey(); err == nil {
			err = relaycred.WriteKeyFile(p, k)
		}
	}
	return k, err
}

// WriteRelayKey writes the key of the standalone relay called name, derived
// from the master key in stateDir, to out (0600): what that relay is given
// (certmesh-server run --role relay --relay-key out). The CA need not run.
func WriteRelayKey(stateDir, name, out string) error {
	if !relayNameRE.MatchString(name) || name == EmbeddedRelayName {
		return fmt.Errorf("relay name %q: want a DNS label other than %q", name, EmbeddedRelayName)
	}
	master, err := relaycred.ReadKeyFile(filepath.Join(stateDir, RelayKeyFile))
	if err != nil {
		return err
	}
	return relaycred.WriteKeyFile(out, relaycred.DeriveKey(master, name))
}

// RelayKey is the key of the relay called name.
func (c *CA) RelayKey(name string) relaycred.Key { return relaycred.DeriveKey(c.relay.master, name) }

// SetEmbeddedRelay tells the CA the UDP ports of the relay running beside
// it (0, 0: none), which it gives agents.
func (c *CA) SetEmbeddedRelay(udpPort, altPort int) {
	c.relay.mu.Lock()
	defer c.relay.mu.Unlock()
	c.relay.udpPort, c.relay.altPort = udpPort, altPort
}

func (c *CA) relayLifetime() time.Duration {
	if r := c.cfg.Relay; r != nil && r.CredentialLifetime != 0 {
		return time.Duration(r.CredentialLifetime)
	}
	return c.crlInterval()
}

// RelayCredentials issues relay credentials to a device that presented its
// current, unrevoked machine certificate over mTLS (the check every mTLS
// endpoint makes: authenticateDevice). They expire after the credential
// lifetime (at most the CRL interval) or with the certificate, whichever
// comes first. host is the Host the device reached the CA at: the embedded
// relay is on that host, its TLS on that very port.
func (c *CA) RelayCredentials(ctx context.Context, peer []*x509.Certificate, host string, _ wire.RelayCredentialsRequest) (wire.RelayCredentialsResponse, error) {
	id, err := c.authenticateDevice(ctx, peer)
	if err != nil {
		return wire.RelayCredentialsResponse{}, err
	}
	now := c.now()
	exp := now.Add(c.relayLifetime())
	if na := peer[0].NotAfter; na.Before(exp) {
		exp = na
	}
	u := relaycred.Username{Device: id.DeviceID, Expires: exp.Truncate(time.Second), Serial: peer[0].SerialNumber}
	if !u.Expires.After(now) {
		return wire.RelayCredentialsResponse{}, refuse(CodeForbidden, "the machine certificate expires too soon for relay credentials: renew first")
	}
	user := u.String()
	resp := wire.RelayCredentialsResponse{Username: user, Realm: string(c.cfg.TrustDomain), Expires: u.Expires}
	if s := c.embeddedRelay(host); s != nil {
		s.Password = c.RelayKey(s.Name).Password(user)
		resp.Relays = append(resp.Relays, *s)
	}
	if c.cfg.Relay != nil {
		for _, r := range c.cfg.Relay.Relays {
			resp.Relays = append(resp.Relays, wire.RelayServer{Name: r.Name, UDP: r.UDP, UDPAlt: r.UDPAlt, TLS: r.TLS,
				Password: c.RelayKey(r.Name).Password(user)})
		}
	}
	if len(resp.Relays) == 0 {
		return wire.RelayCredentialsResponse{}, refuse(CodeNotFound, "this server runs no relay and knows of none")
	}
	c.log.Debug("relay credentials issued", "device", id.DeviceID, "expires", u.Expires)
	return resp, nil
}

// embeddedRelay is the embedded relay's entry (without password), nil if
// none runs.
func (c *CA) embeddedRelay(reqHost string) *wire.RelayServer {
	c.relay.mu.Lock()
	udp, alt := c.relay.udpPort, c.relay.altPort
	c.relay.mu.Unlock()
	if udp == 0 {
		return nil
	}
	host, port, err := net.SplitHostPort(reqHost)
	if err != nil {
		host, port = reqHost, "443"
	}
	if r := c.cfg.Relay; r != nil && r.PublicHost != "" {
		host = r.PublicHost
	}
	s := &wire.RelayServer{Name: EmbeddedRelayName, UDP: net.JoinHostPort(host, strconv.Itoa(udp)), TLS: net.JoinHostPort(host, port)}
	if alt != 0 {
		s.UDPAlt = net.JoinHostPort(host, strconv.Itoa(alt))
	}
	return s
}
