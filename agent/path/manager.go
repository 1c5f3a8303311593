package path

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// Manager is the path layer of one device: it probes each peer's
// candidates, chooses a path per peer and sets it as the peer's WireGuard
// endpoint, and asks STUN servers for this agent's reflexive address. Run
// drives it; its other methods are safe for concurrent use.
type Manager struct {
	cfg  Config
	t    Timers
	b    *Bind
	log  *slog.Logger
	pub  certs.WireGuardKey
	kick chan struct{} // wakes Run: a pong, a STUN answer, a new peer

	mu        sync.Mutex
	peers     map[certs.WireGuardKey]*peer
	byID      map[[probeIDSize]byte]*peer // by the sender ID of the peer's probes
	stun      stunState
	rej       probeCounters
	relayIDs  []RelayID                           // attached relays at the last step
	permitted map[RelayID]map[netip.Addr]struct{} // peer addresses each relay lets in

	setMu sync.Mutex // one SetEndpoint at a time, in the order chosen
}

// New returns a Manager on cfg.Bind; it takes over the Bind's STUN and
// probe datagrams at once. Call Run to start it.
func New(cfg Config) (*Manager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, t: cfg.Timers, b: cfg.Bind, log: cfg.Logger, pub: cfg.PrivateKey.Public(),
		kick: make(chan struct{}, 1), peers: map[certs.WireGuardKey]*peer{},
		byID: map[[probeIDSize]byte]*peer{}, permitted: map[RelayID]map[netip.Addr]struct{}{}}
	m.stun.init(cfg.STUNServers, cfg.Timers)
	m.b.setHandler(m)
	return m, nil
}

// Run probes, chooses paths and sets endpoints until ctx is done.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.t.Tick)
	defer t.Stop()
	for {
		m.step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.kick:
		}
	}
}

func (m *Manager) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// outgoing is one datagram a step sends once the lock is released.
type outgoing struct {
	p []byte
	r Route
}

// step does what is due: pings, STUN requests, endpoint changes, relay
// permissions.
func (m *Manager) step(ctx context.Context) {
	now := time.Now()
	relays := m.b.Relays()
	ids := make([]RelayID, 0, len(relays))
	for id := range relays {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	var out []outgoing
	m.mu.Lock()
	relaysChanged := !slices.Equal(ids, m.relayIDs)
	m.relayIDs = ids
	for _, p := range m.peers {
		if relaysChanged {
			p.dirty = true
		}
		out = m.stepPeer(p, now, out)
	}
	out = m.stun.step(now, out)
	reflexive, changed := m.stun.takeChange()
	permits := m.permitsLocked(relays)
	m.mu.Unlock()

	for _, o := range out {
		if err := m.b.sendTo(o.p, o.r); err != nil {
			m.log.Debug("path: send failed", "to", o.r.String(), "err", err)
		}
	}
	m.applyEndpoints()
	for _, pm := range permits {
		go func() {
			if err := pm.r.Permit(ctx, pm.addrs); err != nil {
				m.log.Warn("path: relay permission failed", "relay", pm.id, "err", err)
				m.mu.Lock()
				delete(m.permitted, pm.id) // asked again next step
				m.mu.Unlock()
			}
		}()
	}
	if changed {
		m.log.Info("path: server-reflexive addresses", "addrs", reflexive)
		if m.cfg.OnReflexive != nil {
			m.cfg.OnReflexive(reflexive)
		}
	}
}

// SetPeer admits a peer (or updates it) with its verified candidates; the
// path layer starts punching to it at once. A peer whose candidates did
// not change is left as it is.
func (m *Manager) SetPeer(key certs.WireGuardKey, cands []Candidate) error {
	cs, err := cleanCandidates(cands)
	if err != nil {
		return fmt.Errorf("setting path candidates of %v: %w", key, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.peers[key]
	if p == nil {
		keys, err := derivePairKeys(m.cfg.PrivateKey, key)
		if err != nil {
			return err
		}
		if other := m.byID[keys.recvID]; other != nil {
			return fmt.Errorf("setting path candidates of %v: probe ID collides with %v's", key, other.key)
		}
		p = newPeer(key, keys, m.t)
		m.peers[key] = p
		m.byID[keys.recvID] = p
	} else if slices.Equal(p.cands, cs) {
		return nil
	}
	p.forgetLeft(cs)
	p.cands = cs
	p.dirty = true
	p.punch(time.Now(), m.t)
	m.wake()
	return nil
}

// RemovePeer forgets a peer (evicted); unknown peers are ignored.
func (m *Manager) RemovePeer(key certs.WireGuardKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.peers[key]; p != nil {
		delete(m.byID, p.keys.recvID)
		delete(m.peers, key)
	}
}

// cleanCandidates checks cands and returns them unmapped, without
// duplicates, in order.
func cleanCandidates(cands []Candidate) ([]Candidate, error) {
	if len(cands) > MaxCandidates {
		return nil, fmt.Errorf("%d candidates, at most %d", len(cands), MaxCandidates)
	}
	out := make([]Candidate, 0, len(cands))
	for _, c := range cands {
		if c.Kind < Local || c.Kind > RelayKind {
			return nil, fmt.Errorf("candidate %v: kind %v cannot be advertised", c.Addr, c.Kind)
		}
		if !c.Addr.IsValid() || c.Addr.Port() == 0 || c.Addr.Addr().IsUnspecified() {
			return nil, fmt.Errorf("candidate %v: no address and port", c.Addr)
		}
		c.Addr = unmap(c.Addr)
		if !slices.ContainsFunc(out, func(o Candidate) bool { return o.Addr == c.Addr }) {
			out = append(out, c)
		}
	}
	return out, nil
}

// applyEndpoints hands WireGuard every peer's newly chosen path. It runs
// on Run's goroutine only: never on a receive goroutine, which wireguard-go
// may be waiting for while it holds the lock SetEndpoint needs.
func (m *Manager) applyEndpoints() {
	m.setMu.Lock()
	defer m.setMu.Unlock()
	type change struct {
		p  *peer
		to Route
	}
	var todo []change
	m.mu.Lock()
	for _, p := range m.peers {
		if p.want.Addr.IsValid() && p.want != p.applied {
			todo = append(todo, change{p, p.want})
		}
	}
	m.mu.Unlock()
	for _, c := range todo {
		if err := m.cfg.SetEndpoint(c.p.key, c.to.String()); err != nil {
			m.log.Warn("path: setting WireGuard endpoint failed", "peer", c.p.key, "endpoint", c.to.String(), "err", err)
			continue
		}
		now := time.Now()
		first := bytes.Compare(m.pub[:], c.p.key[:]) < 0
		m.mu.Lock()
		c.p.applied = c.to
		c.p.kickAt = now
		if !first {
			c.p.kickAt = now.Add(m.t.KickDelay)
		}
		m.mu.Unlock()
		m.log.Info("path: peer endpoint set", "peer", c.p.key, "endpoint", c.to.String(), "path", c.p.pathKind(c.to))
		if first {
			// The side that kicks at once also sends again the
			// initiation wireguard-go sent before this path, which it
			// will not repeat for 5 s (initiation.go); the other side
			// only kicks, later, so that the two do not cross.
			if sent, err := m.b.resendInitiation(&c.p.mac1, c.to); err != nil {
				m.log.Debug("path: sending the handshake initiation again failed", "peer", c.p.key, "endpoint", c.to.String(), "err", err)
			} else if sent {
				m.log.Debug("path: handshake initiation sent again on the new path", "peer", c.p.key, "endpoint", c.to.String())
			}
		}
	}
	m.kickDue()
}

// kickDue calls Kick for the peers whose kick is due.
func (m *Manager) kickDue() {
	if m.cfg.Kick == nil {
		return
	}
	now := time.Now()
	var due []certs.WireGuardKey
	m.mu.Lock()
	for _, p := range m.peers {
		if !p.kickAt.IsZero() && !now.Before(p.kickAt) {
			p.kickAt = time.Time{}
			due = append(due, p.key)
		}
	}
	m.mu.Unlock()
	for _, k := range due {
		if err := m.cfg.Kick(k); err != nil {
			m.log.Debug("path: kicking WireGuard failed", "peer", k, "err", err)
		}
	}
}
