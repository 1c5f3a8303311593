package relayc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certmesh/certmesh/internal/backoff"
)

// ErrNoRelay is WriteTo's error while the client holds no allocation.
var ErrNoRelay = errors.New("no relay allocation")

// Credentials are what the CA issues for the relays: a TURN username valid
// until Expires, and the relays to use, each with its password.
type Credentials struct {
	Username string
	Expires  time.Time
	Servers  []Server
}

// Config configures a Client.
type Config struct {
	// Credentials fetches relay credentials (from the CA, over mTLS). It is
	// called at start and again at two thirds of each credential's life.
	Credentials func(ctx context.Context) (Credentials, error)
	// TLS verifies relays reached over TLS (TLSConfig).
	TLS *tls.Config
	// Receive gets every datagram relayed from a peer; b is valid only
	// during the call. It may be nil at New and set by SetReceive (the path
	// layer's AttachRelay hands it out once the Client exists).
	Receive func(b []byte, from netip.AddrPort)
	// OnChange is called with the new relayed address whenever it changes
	// (another relay, new credentials), or the zero address when the
	// client has none: the agent re-publishes its relay candidate.
	OnChange func(relayed netip.AddrPort)
	Now      func() time.Time // credential expiry (nil: time.Now)
	Lifetime time.Duration    // allocation lifetime to request (0: DefaultLifetime)

	ProbeInterval time.Duration // how often the relay in use is pinged (0: 5 s)
	ProbeTimeout  time.Duration // how long one ping may take (0: 2 s)
	ProbeFailures int           // consecutive lost pings that end a relay (0: 3)
	Log           *slog.Logger
}

// Client keeps one allocation on the nearest relay that answers: it ranks
// the CA's relays by STUN round trip, allocates on the nearest (UDP, or TLS
// where UDP is blocked), pings it, moves to the next when it stops
// answering, and re-allocates with new credentials before the old expire.
// It implements the path layer's Relay interface.
type Client struct {
	cfg  Config
	cur  atomic.Pointer[Allocation]
	poke chan struct{}
	recv atomic.Pointer[func(b []byte, from netip.AddrPort)]

	permMu  sync.Mutex
	permits map[netip.Addr]uint64 // permitted address → sequence of its last Permit
	permSeq uint64

	stMu     sync.Mutex
	status   Status
	avoid    map[string]time.Time // relays that just failed, tried last until then
	retiring map[*Allocation]*time.Timer
}

// Status is what the client is doing, for `certmesh status` and netcheck.
type Status struct {
	Server    string         `json:"server,omitempty"` // the relay in use (its address as listed)
	Transport Transport      `json:"transport,omitempty"`
	Relayed   netip.AddrPort `json:"relayed,omitzero"`
	RTT       time.Duration  `json:"rtt_ns,omitempty"`
	Probes    []Probe        `json:"probes,omitempty"` // the last ranking of all relays
	// CredentialsExpire is when the allocation's credentials expire (it is
	// renewed on fresh ones before: the relayed address stays).
	CredentialsExpire time.Time `json:"credentials_expire,omitzero"`
	// Relays are the relays of the last credentials (without passwords):
	// what `certmesh netcheck` probes when an agent runs.
	Relays    []Server `json:"relays,omitempty"`
	LastError string   `json:"last_error,omitempty"`
}

// New checks cfg and makes a Client; Run drives it.
func New(cfg Config) (*Client, error) {
	if cfg.Credentials == nil {
		return nil, errors.New("relay client: no Credentials function")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.ProbeInterval = cmpOr(cfg.ProbeInterval, 5*time.Second)
	cfg.ProbeTimeout = cmpOr(cfg.ProbeTimeout, 2*time.Second)
	cfg.ProbeFailures = cmpOr(cfg.ProbeFailures, 3)
	c := &Client{cfg: cfg, poke: make(chan struct{}, 1), permits: map[netip.Addr]uint64{}, avoid: map[string]time.Time{}, retiring: map[*Allocation]*time.Timer{}}
	if cfg.Receive != nil {
		c.SetReceive(cfg.Receive)
	}
	return c, nil
}

// CheckNow makes the client ping its relay at once: the agent calls it when
// the machine's addresses change (agent/netmon), so that an allocation the
// new network lost is replaced in one round trip, not at the next ping.
func (c *Client) CheckNow() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// SetReceive sets the function relayed datagrams go to (until it is set,
// they are dropped).
func (c *Client) SetReceive(f func(b []byte, from netip.AddrPort)) { c.recv.Store(&f) }

func (c *Client) receive(b []byte, from netip.AddrPort) {
	if f := c.recv.Load(); f != nil {
		(*f)(b, from)
	}
}

func cmpOr[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}

// RelayedAddr is the relayed address in use (zero: none).
func (c *Client) RelayedAddr() netip.AddrPort {
	if a := c.cur.Load(); a != nil {
		return a.RelayedAddr()
	}
	return netip.AddrPort{}
}

// WriteTo sends b from the relayed address to to.
func (c *Client) WriteTo(ctx context.Context, b []byte, to netip.AddrPort) error {
	a := c.cur.Load()
	if a == nil {
		return ErrNoRelay
	}
	return a.WriteTo(ctx, b, to)
}

// MaxPermits bounds the peer addresses a Client re-permits on each new
// allocation; past it, those permitted longest ago are forgotten.
const MaxPermits = 4096

// Permit lets datagrams from addrs in, now and on every later allocation.
func (c *Client) Permit(ctx context.Context, addrs []netip.Addr) error {
	c.permMu.Lock()
	for _, ip := range addrs {
		c.permSeq++
		c.permits[ip.Unmap()] = c.permSeq
	}
	for len(c.permits) > MaxPermits {
		oldest, seq := netip.Addr{}, c.permSeq+1
		for ip, s := range c.permits {
			if s < seq {
				oldest, seq = ip, s
			}
		}
		delete(c.permits, oldest)
	}
	c.permMu.Unlock()
	if a := c.cur.Load(); a != nil {
		return a.Permit(ctx, addrs)
	}
	return nil
}

// Status is a snapshot of the client's state.
func (c *Client) Status() Status {
	c.stMu.Lock()
	defer c.stMu.Unlock()
	s := c.status
	s.Probes, s.Relays = slices.Clone(s.Probes), slices.Clone(s.Relays)
	return s
}

// Run fetches credentials, allocates and keeps an allocation until ctx is
// done; it returns ctx's error.
func (c *Client) Run(ctx context.Context) error {
	bo := backoff.Backoff{Min: time.Second, Max: time.Minute}
	var creds Credentials
	var renewAt time.Time
	defer c.closeAll()
	for ctx.Err() == nil {
		if creds.Username == "" || !c.cfg.Now().Before(renewAt) {
			cr, err := c.fetch(ctx)
			switch {
			case err == nil:
				now := c.cfg.Now()
				creds, renewAt = cr, now.Add(cr.Expires.Sub(now)*2/3)
				c.stMu.Lock()
				c.status.Relays = make([]Server, len(cr.Servers))
				for i, sv := range cr.Servers {
					sv.Password = ""
					c.status.Relays[i] = sv
				}
				c.stMu.Unlock()
			case creds.Expires.After(c.cfg.Now()):
				// The credentials held are still good: keep (or make) an
				// allocation with them and ask again later.
				c.failed(err)
				renewAt = c.cfg.Now().Add(bo.Next())
				if a := c.cur.Load(); a != nil && a.Err() == nil {
					c.watchCurrent(ctx, a, renewAt)
					continue
				}
			default:
				c.failed(err)
				sleep(ctx, bo.Next())
				continue
			}
		}
		if c.renew(creds) {
			c.watchCurrent(ctx, c.cur.Load(), renewAt)
			continue
		}
		a, err := c.allocate(ctx, creds)
		if err != nil {
			c.failed(err)
			c.install(ctx, nil)
			sleep(ctx, bo.Next())
			continue
		}
		bo.Reset()
		c.install(ctx, a)
		c.watchCurrent(ctx, a, renewAt)
	}
	return ctx.Err()
}

// renew moves the allocation in use, if it still works and its relay is
// among creds', to creds (Allocation.Renew): its relayed address stays.
func (c *Client) renew(creds Credentials) bool {
	a := c.cur.Load()
	if a == nil || a.Err() != nil || !a.credExpires.Before(creds.Expires) {
		return false
	}
	for _, s := range creds.Servers {
		if s.UDP != a.cfg.Addr && s.TLS != a.cfg.Addr {
			continue
		}
		if err := a.Renew(creds.Username, s.Password, creds.Expires); err != nil {
			c.cfg.Log.Info("relay: a new allocation instead", "err", err)
			return false
		}
		c.stMu.Lock()
		c.status.CredentialsExpire = creds.Expires
		c.stMu.Unlock()
		return true
	}
	return false
}

// watchCurrent watches a until renewAt; a relay that fails is tried last
// for a minute.
func (c *Client) watchCurrent(ctx context.Context, a *Allocation, renewAt time.Time) {
	if err := c.watch(ctx, a, renewAt); err != nil {
		c.failed(err)
		c.stMu.Lock()
		c.avoid[a.cfg.Addr] = time.Now().Add(time.Minute)
		c.stMu.Unlock()
	}
}

func (c *Client) fetch(ctx context.Context) (Credentials, error) {
	cr, err := c.cfg.Credentials(ctx)
	switch {
	case err != nil:
		return cr, fmt.Errorf("fetch relay credentials: %w", err)
	case cr.Username == "":
		return cr, errors.New("relay credentials without a username")
	case len(cr.Servers) == 0:
		return cr, errors.New("relay credentials list no relay")
	case !cr.Expires.After(c.cfg.Now()):
		return cr, fmt.Errorf("relay credentials expired at %s", cr.Expires.Format(time.RFC3339))
	}
	return cr, nil
}
