package relayc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v3"
)

// DefaultLifetime is the allocation lifetime an agent asks for (RFC 8656's
// default); the allocation is refreshed at half the lifetime the relay
// grants.
const DefaultLifetime = 10 * time.Minute

// AllocConfig says how to reach one relay and with which credentials.
type AllocConfig struct {
	Transport Transport
	Addr      string      // host:port of the relay's UDP port or TLS port
	TLS       *tls.Config // verifies a TLS relay (TLSConfig); unused over UDP

	Username, Password string // TURN long-term credentials (from the CA)

	// Lifetime is the allocation lifetime to request (0: DefaultLifetime).
	Lifetime time.Duration
	// Receive gets every datagram relayed from a peer: b is valid only
	// during the call.
	Receive func(b []byte, from netip.AddrPort)
	Log     *slog.Logger

	// Renewal periods (0: permRefresh, chanRefresh); tests shorten them.
	permEvery, chanEvery time.Duration
	noRefresh            bool // a test's allocation that lapses
}

// Allocation is one TURN allocation on one relay: a relayed transport
// address from which WriteTo sends, and at which peers' datagrams arrive
// (delivered to Receive). It refreshes itself at half its lifetime, renews
// its permissions and channel bindings, and ends (Done) when the relay stops
// answering or the link breaks.
type Allocation struct {
	*link
	cfg AllocConfig

	relayed netip.AddrPort
	mapped  netip.AddrPort

	authMu    sync.Mutex
	username  stun.Username
	realm     stun.Realm
	nonce     stun.Nonce
	integrity stun.MessageIntegrity

	lifeMu  sync.Mutex
	granted time.Duration // lifetime the relay granted last

	peers peerTable
	stop  chan struct{}

	credExpires time.Time // of the credentials it was made with (set by Client)
}

// Allocate opens a link to the relay and allocates a relayed UDP address.
func Allocate(ctx context.Context, cfg AllocConfig) (*Allocation, error) {
	if cfg.Receive == nil {
		return nil, errors.New("relay allocation: no Receive function")
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	l, err := dial(ctx, cfg.Transport, cfg.Addr, cfg.TLS, cfg.Log)
	if err != nil {
		return nil, err
	}
	a := &Allocation{link: l, cfg: cfg, username: stun.NewUsername(cfg.Username), stop: make(chan struct{})}
	a.peers.init()
	var h handler = a
	l.h.Store(&h)
	res, err := a.request(ctx, "Allocate", stun.MethodAllocate, requestedTransportUDP{}, lifetime(cfg.Lifetime))
	if err != nil {
		l.close()
		return nil, err
	}
	if a.relayed, err = getAddr(res, stun.AttrXORRelayedAddress); err != nil {
		l.close()
		return nil, fmt.Errorf("Allocate answer from relay %s: %w", l.server, err)
	}
	a.mapped, _ = getAddr(res, stun.AttrXORMappedAddress) // optional
	if a.granted, err = getLifetime(res); err == nil && a.granted <= 0 {
		err = errors.New("LIFETIME 0")
	}
	if err != nil {
		l.close()
		return nil, fmt.Errorf("Allocate answer from relay %s: %w", l.server, err)
	}
	l.log.Debug("relay allocation", "relay", l.server, "transport", l.kind, "relayed", a.relayed, "lifetime", a.granted)
	go a.maintain()
	return a, nil
}

// RelayedAddr is the relayed transport address: this agent's relay candidate.
func (a *Allocation) RelayedAddr() netip.AddrPort { return a.relayed }

// MappedAddr is this agent's address as the relay saw it (for UDP, a
// server-reflexive address of the allocation's own socket).
func (a *Allocation) MappedAddr() netip.AddrPort { return a.mapped }

// Server is the relay's address as dialled.
func (a *Allocation) Server() netip.AddrPort { return a.server }

// Transport is how this allocation reaches its relay.
func (a *Allocation) Transport() Transport { return a.kind }

// Done is closed when the allocation has ended; Err says why.
func (a *Allocation) Done() <-chan struct{} { return a.done }

// Ping measures the round trip to the relay through the allocation's own
// link (a STUN Binding).
func (a *Allocation) Ping(ctx context.Context) (time.Duration, error) {
	rtt, _, err := a.ping(ctx)
	return rtt, err
}

// Lifetime is the lifetime the relay granted at the last Allocate or Refresh.
func (a *Allocation) Lifetime() time.Duration {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	return a.granted
}

// Close releases the allocation at the relay (a Refresh with lifetime 0,
// not waited for) and closes the link.
func (a *Allocation) Close() error {
	select {
	case <-a.stop:
		return nil
	default:
		close(a.stop)
	}
	if a.Err() == nil {
		if m, err := a.build(stun.MethodRefresh, lifetime(0)); err == nil {
			_ = a.write(m.Raw)
		}
	}
	a.close()
	return nil
}

// request sends an authenticated TURN request, answering the relay's 401
// (realm and nonce) and 438 (stale nonce) challenges, and returns the
// success response after checking its MESSAGE-INTEGRITY.
func (a *Allocation) request(ctx context.Context, what string, method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	for range 3 {
		authed := a.hasRealm()
		m, err := a.build(method, attrs...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		res, err := a.transact(ctx, m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if res.Type.Class == stun.ClassSuccessResponse {
			if authed {
				if err := a.checkIntegrity(res); err != nil {
					return nil, fmt.Errorf("%s answer from relay %s: %w", what, a.server, err)
				}
			}
			return res, nil
		}
		switch code := errorCode(res); {
		case code == stun.CodeUnauthorized && !authed, code == stun.CodeStaleNonce:
			if err := a.challenge(res); err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
		default:
			return nil, responseError(what, res)
		}
	}
	return nil, fmt.Errorf("%s: relay %s keeps challenging", what, a.server)
}

func (a *Allocation) hasRealm() bool {
	a.authMu.Lock()
	defer a.authMu.Unlock()
	return a.realm != nil
}

// build makes a request of method with attrs and, once the relay has
// challenged, the long-term credential attributes.
func (a *Allocation) build(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	s := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
	a.authMu.Lock()
	if a.realm != nil {
		s = append(s, a.username, a.realm, a.nonce, a.integrity)
	}
	a.authMu.Unlock()
	return stun.Build(append(s, stun.Fingerprint)...)
}

// challenge takes the realm and nonce from a 401 or 438 answer.
func (a *Allocation) challenge(res *stun.Message) error {
	var realm stun.Realm
	var nonce stun.Nonce
	if err := nonce.GetFrom(res); err != nil {
		return fmt.Errorf("relay %s challenged without a NONCE: %w", a.server, err)
	}
	if err := realm.GetFrom(res); err != nil {
		return fmt.Errorf("relay %s challenged without a REALM: %w", a.server, err)
	}
	a.authMu.Lock()
	defer a.authMu.Unlock()
	if a.realm == nil || string(a.realm) != string(realm) {
		a.integrity = stun.NewLongTermIntegrity(a.cfg.Username, string(realm), a.cfg.Password)
	}
	a.realm, a.nonce = realm, nonce
	return nil
}

func (a *Allocation) checkIntegrity(res *stun.Message) error {
	a.authMu.Lock()
	i := a.integrity
	a.authMu.Unlock()
	if err := i.Check(res); err != nil {
		return fmt.Errorf("MESSAGE-INTEGRITY: %w", err)
	}
	return nil
}
