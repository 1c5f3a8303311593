// Package relay is certmesh's TURN relay (RFC 8656, pion/turn): agents
// that find no direct path send their WireGuard datagrams through it, over
// UDP or, where UDP is blocked, over TLS on TCP. It also answers STUN
// Binding requests on its UDP ports, so agents learn their public address
// (and, comparing two ports, their NAT's mapping behaviour).
//
// The relay is untrusted like the coordinator: it only ever sees WireGuard
// ciphertext, and it holds no signing key. It admits only credentials the
// CA issued to an enrolled device (internal/relaycred): each authenticated
// request (Allocate, Refresh, CreatePermission, ChannelBind) must carry an
// unexpired username and its HMAC password under this relay's key, and an
// allocation stops relaying the moment the credential it was made with, or
// the latest one of the same device it was refreshed with, expires.
package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/pionlog"
	"github.com/certmesh/certmesh/internal/relaycred"
	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"
)

// Defaults.
const (
	DefaultMaxAllocations = 4096
	// DefaultMaxPerDevice bounds one device's allocations (an agent needs
	// one per relay; a few more cover a restart before the old expired).
	DefaultMaxPerDevice = 8
	// DefaultMaxTLSConns bounds the TURN-over-TLS connections open at once
	// (each costs a goroutine and buffers before it authenticates).
	DefaultMaxTLSConns = 4096
)

// Config configures a relay.
type Config struct {
	// UDP are the UDP addresses TURN and STUN listen on (at least one;
	// give two ports of one host for netcheck's mapping test).
	UDP []string
	// RelayIP is the IPv4 address in allocations, where peers send to:
	// the relay's public address. Zero: the host of UDP[0] if it is a
	// specific address, else the host's first global unicast IPv4.
	RelayIP netip.Addr
	// Key is this relay's key (relaycred.DeriveKey of the CA's master
	// key and this relay's name).
	Key relaycred.Key
	// Realm is the TURN realm (the trust domain).
	Realm string
	// DenyPeers are further peer ranges allocations may not send to.
	DenyPeers []netip.Prefix
	// MaxAllocations and MaxPerDevice bound allocations, MaxTLSConns the
	// TLS connections (0: defaults).
	MaxAllocations, MaxPerDevice, MaxTLSConns int
	Now                                       func() time.Time
	Logger                                    *slog.Logger
}

// Relay is a running TURN relay.
type Relay struct {
	cfg    Config
	now    func() time.Time
	log    *slog.Logger
	bindIP netip.Addr // where relay sockets listen
	policy *peerPolicy
	allocs allocs
	udp    []*net.UDPConn
	tls    *connListener
	turn   *turn.Server
	close  sync.Once
}

// New starts a relay on cfg.UDP; TLS connections come in through ServeTLS.
func New(cfg Config) (*Relay, error) {
	if len(cfg.UDP) == 0 {
		return nil, errors.New("relay: no UDP listen address")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxAllocations <= 0 {
		cfg.MaxAllocations = DefaultMaxAllocations
	}
	if cfg.MaxPerDevice <= 0 {
		cfg.MaxPerDevice = DefaultMaxPerDevice
	}
	if cfg.MaxTLSConns <= 0 {
		cfg.MaxTLSConns = DefaultMaxTLSConns
	}
	r := &Relay{cfg: cfg, now: cfg.Now, log: cfg.Logger,
		allocs: allocs{byPort: map[uint16]*relayConn{}, byTuple: map[string]*relayConn{}, perDevice: map[certs.DeviceID]int{}, cut: map[certs.DeviceID]time.Time{}}}
	for _, a := range cfg.UDP {
		ua, err := net.ResolveUDPAddr("udp", a)
		var pc *net.UDPConn
		if err == nil {
			pc, err = net.ListenUDP("udp", ua) // clients and STUN on IPv4 and IPv6
		}
		if err != nil {
			r.closeUDP()
			return nil, fmt.Errorf("relay: listening on UDP %s: %w", a, err)
		}
		r.udp = append(r.udp, pc)
	}
	bind := r.udp[0].LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	relayIP, err := chooseRelayIP(cfg.RelayIP, bind)
	if err != nil {
		r.closeUDP()
		return nil, err
	}
	// Relay sockets are IPv4 (pion's allocations are): on the listen
	// address if it is one, else on all IPv4 addresses.
	r.bindIP = bind
	if !bind.Is4() || bind.IsUnspecified() {
		r.bindIP = netip.IPv4Unspecified()
	}
	r.policy = &peerPolicy{relayIP: relayIP, own: hostAddrs(relayIP), deny: cfg.DenyPeers}
	r.tls = newConnListener(r.udp[0].LocalAddr())
	sc := turn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   r.authHandler,
		QuotaHandler:  func(username, _ string, _ net.Addr) bool { return r.quota(username) },
		LoggerFactory: pionlog.Factory{Log: cfg.Logger, ErrorsAsWarnings: true},
		EventHandler: turn.EventHandler{
			OnAllocationCreated: func(src, dst net.Addr, _, username, _ string, relayAddr net.Addr, _ int) {
				r.created(src, dst, username, relayAddr)
			},
			OnAllocationDeleted: func(src, dst net.Addr, _, _, _ string) { r.deleted(src, dst) },
			OnAuth: func(src, dst net.Addr, _, username, _, method string, verdict bool) {
				if verdict && method == stun.MethodRefresh.String() {
					r.refreshed(src, dst, username)
				}
			},
		},
		ListenerConfigs: []turn.ListenerConfig{{Listener: r.tls, RelayAddressGenerator: addrGen{r}, PermissionHandler: r.policy.handler}},
	}
	for _, pc := range r.udp {
		sc.PacketConnConfigs = append(sc.PacketConnConfigs,
			turn.PacketConnConfig{PacketConn: newListenConn(pc), RelayAddressGenerator: addrGen{r}, PermissionHandler: r.policy.handler})
	}
	if r.turn, err = turn.NewServer(sc); err != nil {
		r.closeUDP()
		return nil, fmt.Errorf("relay: starting TURN: %w", err)
	}
	r.log.Info("relay running", "udp", r.UDPAddrs(), "relayed_ip", relayIP, "realm", cfg.Realm)
	return r, nil
}

// chooseRelayIP picks the relayed address's IP.
func chooseRelayIP(configured, bind netip.Addr) (netip.Addr, error) {
	if configured.IsValid() {
		if !configured.Unmap().Is4() {
			return netip.Addr{}, fmt.Errorf("relay: relayed IP %s: want an IPv4 address (allocations are IPv4)", configured)
		}
		return configured.Unmap(), nil
	}
	if bind.Is4() && !bind.IsUnspecified() {
		return bind, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("relay: listing the host's addresses: %w", err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && p.Addr().IsGlobalUnicast() {
			return p.Addr(), nil
		}
	}
	return netip.Addr{}, errors.New("relay: the UDP listen address is not a specific IPv4 address and the host has no global IPv4 address: set the relay's public IP")
}

// authHandler checks a TURN request's username and returns the long-term
// credential key of its password under this relay's key. pion checks the
// request's MESSAGE-INTEGRITY with it (hmac.Equal: constant time).
func (r *Relay) authHandler(username, realm string, src net.Addr) ([]byte, bool) {
	u, err := relaycred.ParseUsername(username)
	if err == nil {
		err = u.Check(r.now())
	}
	if err == nil && r.allocs.isCut(u.Device) {
		err = fmt.Errorf("device %s was cut off (revoked)", u.Device)
	}
	if err == nil {
		err = r.allocs.checkRevoked(u)
	}
	if err == nil && realm != r.cfg.Realm {
		err = fmt.Errorf("realm %q, want %q", realm, r.cfg.Realm)
	}
	if err != nil {
		r.log.Debug("relay request refused", "client", src.String(), "err", err)
		return nil, false
	}
	return turn.GenerateAuthKey(username, realm, r.cfg.Key.Password(username)), true
}

// UDPAddrs are the UDP addresses the relay listens on.
func (r *Relay) UDPAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, pc := range r.udp {
		out = append(out, pc.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	return out
}

// RelayIP is the IPv4 address in this relay's allocations.
func (r *Relay) RelayIP() netip.Addr { return r.policy.relayIP }

// Allocations is the number of live allocations.
func (r *Relay) Allocations() int { return r.turn.AllocationCount() }

func (r *Relay) closeUDP() {
	for _, pc := range r.udp {
		_ = pc.Close()
	}
}

// Close stops the relay: its listeners, TLS connections and allocations.
func (r *Relay) Close() error {
	var err error
	r.close.Do(func() {
		err = r.turn.Close() // the UDP sockets and the TLS listener
		r.tls.closeConns()
	})
	return err
}
