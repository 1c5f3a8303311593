package path

import (
	"crypto/rand"
	"iter"
	"net/netip"
	"time"

	"github.com/certmesh/certmesh/certs"
	"golang.zx2c4.com/wireguard/device"
)

// Bounds per peer.
const (
	maxLearned  = 8    // peer-reflexive addresses
	maxPending  = 1024 // pings waiting for a pong
	maxSeenPing = 512  // pings remembered against replay
	learnedFor  = 2 * time.Minute
)

// peer is the path state of one admitted peer. Guarded by Manager.mu.
type peer struct {
	key     certs.WireGuardKey
	keys    pairKeys
	cands   []Candidate                  // verified
	learned map[netip.AddrPort]time.Time // peer-reflexive: last authenticated ping from there
	routes  map[Route]*routeState
	dirty   bool // routes must be rebuilt
	pending map[txID]pendingPing
	replay  *pingReplay

	want, applied Route // chosen path; the one WireGuard has (zero: none)
	hadPath       bool  // want was working at the last step
	punchUntil    time.Time
	nextProbeAll  time.Time
	nextHeartbeat time.Time
	kickAt        time.Time      // when to Kick WireGuard (zero: no kick due)
	seenAs        netip.AddrPort // how the peer saw us, from its last pong

	// mac1 recognises the handshake initiations meant for this peer
	// (initiation.go). Set by newPeer, then read-only: no Manager.mu.
	mac1 device.CookieChecker
}

// routeState is what is known about one way to reach a peer.
type routeState struct {
	route    Route
	relayed  bool // through a relay: ours (route.Relay) or the peer's (a relay candidate)
	lastPong time.Time
	rtt      time.Duration
}

type pendingPing struct {
	route Route
	at    time.Time
}

func newPeer(key certs.WireGuardKey, keys pairKeys, t Timers) *peer {
	p := &peer{key: key, keys: keys, learned: map[netip.AddrPort]time.Time{},
		routes: map[Route]*routeState{}, pending: map[txID]pendingPing{},
		replay: newPingReplay(t.PingWindow, maxSeenPing)}
	p.mac1.Init(device.NoisePublicKey(key))
	return p
}

// punch makes every candidate be pinged now and every PunchInterval for
// PunchFor: both sides do so when a peer is admitted, so that each one's
// pings open its own NAT for the other's.
func (p *peer) punch(now time.Time, t Timers) {
	p.punchUntil = now.Add(t.PunchFor)
	p.nextProbeAll = now
}

// targets are the peer's addresses: its candidates and what it was seen
// from.
func (p *peer) targets() iter.Seq[netip.AddrPort] {
	return func(yield func(netip.AddrPort) bool) {
		for _, c := range p.cands {
			if !yield(c.Addr) {
				return
			}
		}
		for ap := range p.learned {
			if !yield(ap) {
				return
			}
		}
	}
}

// forgetLeft drops the peer-reflexive addresses on an IP the peer has
// just stopped advertising (its old candidates have it, cands do not):
// the peer signed that it left that address (a laptop that roamed), and
// its old path there would otherwise be kept, as the current one, until
// it stopped answering. A NAT mapping of a reflexive candidate the peer
// still advertises stays.
func (p *peer) forgetLeft(cands []Candidate) {
	left := map[netip.Addr]bool{}
	for _, c := range p.cands {
		left[c.Addr.Addr()] = true
	}
	for _, c := range cands {
		delete(left, c.Addr.Addr())
	}
	for ap := range p.learned {
		if left[ap.Addr()] {
			delete(p.learned, ap)
		}
	}
}

// relayCandidate reports whether ap is on a relay: one of the peer's
// relay candidates, another allocation on the same relay address (the
// peer pinging from a new allocation, learned before its advertisement
// names it), the relayed address of one of our own relays, or one of the
// relay hosts the agent knows (ours holds those two). Such a
// path goes through a relay whatever route reaches it, and must lose to a
// direct one. On loopback (a mesh on one host) every address shares the
// IP, so there only the exact relay candidate counts.
func (p *peer) relayCandidate(ap netip.AddrPort, ours map[netip.Addr]bool) bool {
	sameIP := !ap.Addr().IsLoopback()
	if sameIP && ours[ap.Addr()] {
		return true
	}
	for _, c := range p.cands {
		if c.Kind == RelayKind && (c.Addr == ap || sameIP && c.Addr.Addr() == ap.Addr()) {
			return true
		}
	}
	return false
}

// syncRoutes makes the routes every target, reached directly and through
// each of our relays, that the policy allows; known routes keep their
// measurements.
func (m *Manager) syncRoutes(p *peer) {
	keep := map[Route]bool{}
	ours := map[netip.Addr]bool{}
	for _, ip := range m.cfg.RelayHosts {
		ours[ip.Unmap()] = true
	}
	for _, r := range m.b.Relays() {
		if a := r.RelayedAddr(); a.IsValid() {
			ours[a.Addr()] = true
		}
	}
	for ap := range p.targets() {
		if err := m.cfg.Policy(ap); err != nil {
			continue
		}
		rc := p.relayCandidate(ap, ours)
		for _, id := range append([]RelayID{0}, m.relayIDs...) {
			r := Route{Relay: id, Addr: ap}
			keep[r] = true
			if p.routes[r] == nil {
				p.routes[r] = &routeState{route: r}
			}
			// Recomputed every time: a peer-reflexive address (the
			// peer pinging from its relay allocation) may become a
			// signed relay candidate later.
			p.routes[r].relayed = id != 0 || rc
		}
	}
	for r := range p.routes {
		if !keep[r] {
			delete(p.routes, r)
		}
	}
	p.dirty = false
}

// stepPeer does what is due for p at now and appends the pings to send.
func (m *Manager) stepPeer(p *peer, now time.Time, out []outgoing) []outgoing {
	for tx, pp := range p.pending {
		if now.Sub(pp.at) >= m.t.PingTimeout {
			delete(p.pending, tx)
		}
	}
	for ap, at := range p.learned {
		if now.Sub(at) >= learnedFor {
			delete(p.learned, ap)
			p.dirty = true
		}
	}
	if p.dirty {
		m.syncRoutes(p)
	}
	if best := p.choose(now, m.t.TrustFor); best != p.want {
		p.want = best
	}
	working := p.works(p.want, now, m.t.TrustFor)
	if p.hadPath && !working {
		m.log.Info("path: chosen path stopped answering; probing every candidate", "peer", p.key, "endpoint", p.applied.String())
		p.punch(now, m.t)
	}
	p.hadPath = working
	if working && !now.Before(p.nextHeartbeat) {
		out = m.ping(p, p.want, now, out)
		p.nextHeartbeat = now.Add(m.t.Heartbeat)
	}
	if now.Before(p.nextProbeAll) {
		return out
	}
	for r := range p.routes {
		if !(working && r == p.want) {
			out = m.ping(p, r, now, out)
		}
	}
	switch {
	case now.Before(p.punchUntil):
		p.nextProbeAll = now.Add(m.t.PunchInterval)
	case working && !p.routes[p.want].relayed:
		p.nextProbeAll = now.Add(m.t.UpgradeDirect)
	default:
		p.nextProbeAll = now.Add(m.t.Upgrade)
	}
	return out
}

// ping appends a ping of p along r.
func (m *Manager) ping(p *peer, r Route, now time.Time, out []outgoing) []outgoing {
	if len(p.pending) >= maxPending {
		return out
	}
	pr := probe{kind: kindPing, id: p.keys.sendID, atMS: m.cfg.Now().UnixMilli()}
	rand.Read(pr.tx[:])
	p.pending[pr.tx] = pendingPing{route: r, at: now}
	return append(out, outgoing{pr.marshal(&p.keys.sendMAC), r})
}

func (p *peer) works(r Route, now time.Time, trust time.Duration) bool {
	rs := p.routes[r]
	return rs != nil && !rs.lastPong.IsZero() && now.Sub(rs.lastPong) < trust
}

// choose returns the best working route: direct before relayed, then the
// lowest RTT; the current one stays unless the best is of a better class
// or at least a fifth faster (no flapping between near-equal paths).
func (p *peer) choose(now time.Time, trust time.Duration) Route {
	var best *routeState
	for _, rs := range p.routes {
		if !p.works(rs.route, now, trust) {
			continue
		}
		if best == nil || better(rs, best) {
			best = rs
		}
	}
	if best == nil {
		return Route{}
	}
	if cur := p.routes[p.want]; cur != nil && cur != best && p.works(cur.route, now, trust) &&
		cur.relayed == best.relayed && best.rtt*5 > cur.rtt*4 {
		return cur.route
	}
	return best.route
}

func better(a, b *routeState) bool {
	if a.relayed != b.relayed {
		return !a.relayed
	}
	if a.rtt != b.rtt {
		return a.rtt < b.rtt
	}
	return a.route.String() < b.route.String() // deterministic
}

// pathKind names route r's kind of path.
func (p *peer) pathKind(r Route) PathKind {
	rs := p.routes[r]
	switch {
	case rs == nil || !r.Addr.IsValid():
		return PathNone
	case rs.relayed:
		return PathRelay
	default:
		return PathDirect
	}
}
