package path

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
)

// Kind is where a candidate address comes from.
type Kind uint8

const (
	// Local is an address of one of the peer's interfaces.
	Local Kind = iota + 1
	// Reflexive is the peer's address as a STUN server saw it.
	Reflexive
	// RelayKind is the peer's relayed address on a TURN relay.
	RelayKind
	// PeerReflexive is the address an authenticated probe from the peer
	// came from (learned here, never advertised).
	PeerReflexive
)

func (k Kind) String() string {
	switch k {
	case Local:
		return "local"
	case Reflexive:
		return "reflexive"
	case RelayKind:
		return "relay"
	case PeerReflexive:
		return "peer-reflexive"
	}
	return fmt.Sprintf("path.Kind(%d)", uint8(k))
}

// Candidate is one address a peer may be reached at. The path layer only
// probes candidates from a verified (signed) advertisement and addresses
// learned from authenticated probes.
type Candidate struct {
	Kind Kind
	Addr netip.AddrPort
}

// MaxCandidates bounds the candidates of one peer (wire.MaxEndpoints).
const MaxCandidates = 16

// Timers are the path layer's intervals; zero fields take the defaults
// (Tailscale's magicsock timers where it has one).
type Timers struct {
	Tick          time.Duration // how often due work is looked for; 100 ms
	Heartbeat     time.Duration // ping of the chosen path; 3 s
	PingTimeout   time.Duration // a ping without a pong by then is lost; 5 s
	TrustFor      time.Duration // a path works while its last pong is this recent; 6.5 s
	PunchInterval time.Duration // ping every candidate this often while punching; 500 ms
	PunchFor      time.Duration // punching lasts this long after admission, a change or a lost path; 5 s
	Upgrade       time.Duration // re-probe every candidate this often while relayed or pathless; 5 s
	UpgradeDirect time.Duration // ... and while direct (a better direct path); 1 min
	STUN          time.Duration // Binding requests to each STUN server; 20 s (NAT mappings last ~30 s)
	STUNRetry     time.Duration // first retry of an unanswered Binding request; 1 s (then doubling)
	PingWindow    time.Duration // a ping's clock may be this far from ours; 60 s
	KickDelay     time.Duration // the higher key's Kick after a path change; 1 s
}

func (t Timers) withDefaults() Timers {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Tick, 100*time.Millisecond)
	def(&t.Heartbeat, 3*time.Second)
	def(&t.PingTimeout, 5*time.Second)
	def(&t.TrustFor, 6500*time.Millisecond)
	def(&t.PunchInterval, 500*time.Millisecond)
	def(&t.PunchFor, 5*time.Second)
	def(&t.Upgrade, 5*time.Second)
	def(&t.UpgradeDirect, time.Minute)
	def(&t.STUN, 20*time.Second)
	def(&t.STUNRetry, time.Second)
	def(&t.PingWindow, time.Minute)
	def(&t.KickDelay, time.Second)
	return t
}

// Config configures a Manager.
type Config struct {
	// Bind is the device's bind (wrapped by wgdev through Bind.Wrap).
	Bind *Bind
	// PrivateKey is the device's WireGuard key: the probe keys are derived
	// from it and each peer's certified public key.
	PrivateKey wgdev.PrivateKey
	// Policy says why a destination may not be probed or answered (nil:
	// it may). The agent passes its endpoint policy; a nil Policy allows
	// every address.
	Policy func(netip.AddrPort) error
	// SetEndpoint points the peer's WireGuard endpoint at a path, in
	// Route.String form (wgdev.Device.SetEndpoint). Required.
	SetEndpoint func(peer certs.WireGuardKey, endpoint string) error
	// Kick, if set, makes WireGuard send to the peer now: a handshake if
	// it has no session, else a keepalive (wgdev.Device.Kick). It is called
	// after each path change, at once by the side with the lower public
	// key and KickDelay later by the other: two initiations that cross
	// cancel each other and cost a 5 s retry.
	Kick func(peer certs.WireGuardKey) error
	// STUNServers are asked for this agent's server-reflexive address.
	STUNServers []netip.AddrPort
	// RelayHosts are the IPs of the relays the agent knows of (the CA's
	// list): a path to any address on one of them goes through a relay
	// (another device's allocation, maybe not advertised yet), and loses
	// to a direct one. Loopback addresses are ignored (a mesh on one host).
	RelayHosts []netip.Addr
	// OnReflexive, if set, is called (from Run's goroutine) with this
	// agent's server-reflexive addresses each time they change.
	OnReflexive func([]netip.AddrPort)
	Timers      Timers
	Logger      *slog.Logger
	// Now is the clock probes carry and are checked against; default
	// time.Now. Intervals run on the time package's timers.
	Now func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if c.Bind == nil {
		return c, errors.New("path: no Bind")
	}
	if c.PrivateKey.IsZero() {
		return c, errors.New("path: no private key")
	}
	if c.SetEndpoint == nil {
		return c, errors.New("path: no SetEndpoint")
	}
	for _, s := range c.STUNServers {
		if !s.IsValid() || s.Port() == 0 {
			return c, fmt.Errorf("path: STUN server %v: no address and port", s)
		}
	}
	if c.Policy == nil {
		c.Policy = func(netip.AddrPort) error { return nil }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Timers = c.Timers.withDefaults()
	return c, nil
}
