package path

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// ProbeCounters count the probes the path layer refused.
type ProbeCounters struct {
	Malformed   uint64 // not a well-formed probe
	UnknownPeer uint64 // sender ID of no admitted peer
	Forged      uint64 // MAC does not verify under the peer's key
	Replayed    uint64 // a ping seen before, or stale
	Unsolicited uint64 // a pong to no ping of ours, or from elsewhere than the ping went
	Refused     uint64 // the endpoint policy refuses the address
}

type probeCounters struct {
	malformed, unknownPeer, forged, replayed, unsolicited, refused atomic.Uint64
}

// ProbeCounters returns how many probes were refused, by reason.
func (m *Manager) ProbeCounters() ProbeCounters {
	c := &m.rej
	return ProbeCounters{Malformed: c.malformed.Load(), UnknownPeer: c.unknownPeer.Load(),
		Forged: c.forged.Load(), Replayed: c.replayed.Load(), Unsolicited: c.unsolicited.Load(),
		Refused: c.refused.Load()}
}

// handleProbe takes one probe off the socket (or a relay). It runs on a
// receive goroutine: it answers a ping at once, but leaves endpoint
// changes to Run.
func (m *Manager) handleProbe(b []byte, from Route) {
	pr, err := parseProbe(b)
	if err != nil {
		m.rej.malformed.Add(1)
		return
	}
	m.mu.Lock()
	p := m.byID[pr.id]
	switch {
	case p == nil:
		m.mu.Unlock()
		m.rej.unknownPeer.Add(1)
		return
	case !verifyMAC(&p.keys.recvMAC, b):
		m.mu.Unlock()
		m.rej.forged.Add(1)
		return
	}
	var pong []byte
	switch pr.kind {
	case kindPing:
		pong = m.pingLocked(p, pr, from)
	case kindPong:
		m.pongLocked(p, pr, from)
	}
	m.mu.Unlock()
	if pong != nil {
		if err := m.b.sendTo(pong, from); err != nil {
			m.log.Debug("path: sending pong failed", "to", from.String(), "err", err)
		}
	}
}

// pingLocked checks an authenticated ping and returns its pong: it tells
// the pinger where the ping came from. The source becomes a peer-reflexive
// address of the peer, probed like its candidates.
func (m *Manager) pingLocked(p *peer, pr probe, from Route) []byte {
	if !p.replay.accept(pr.tx, pr.atMS, m.cfg.Now()) {
		m.rej.replayed.Add(1)
		return nil
	}
	if err := m.cfg.Policy(from.Addr); err != nil {
		m.rej.refused.Add(1)
		return nil
	}
	m.learnLocked(p, from.Addr)
	pong := probe{kind: kindPong, id: p.keys.sendID, tx: pr.tx, atMS: m.cfg.Now().UnixMilli(), seen: from.Addr}
	return pong.marshal(&p.keys.sendMAC)
}

// learnLocked notes that an authenticated ping came from ap.
func (m *Manager) learnLocked(p *peer, ap netip.AddrPort) {
	now := time.Now()
	if _, ok := p.learned[ap]; ok {
		p.learned[ap] = now
		return
	}
	for _, c := range p.cands {
		if c.Addr == ap {
			return
		}
	}
	if len(p.learned) >= maxLearned {
		var oldest netip.AddrPort
		for a, at := range p.learned {
			if !oldest.IsValid() || at.Before(p.learned[oldest]) {
				oldest = a
			}
		}
		delete(p.learned, oldest)
	}
	p.learned[ap] = now
	p.dirty = true
	m.log.Debug("path: peer-reflexive address", "peer", p.key, "addr", ap)
	// The peer's pings there got through: answer them with ours soon.
	p.nextProbeAll = now
	m.wake()
}

// pongLocked takes an authenticated pong: it counts only as the answer to
// a ping of ours that went out along the very route it came back on, and
// only once.
func (m *Manager) pongLocked(p *peer, pr probe, from Route) {
	pend, ok := p.pending[pr.tx]
	if !ok || pend.route != from {
		m.rej.unsolicited.Add(1)
		return
	}
	delete(p.pending, pr.tx)
	rs := p.routes[from]
	if rs == nil {
		return // the route went away meanwhile
	}
	now := time.Now()
	rs.lastPong = now
	rs.rtt = now.Sub(pend.at)
	p.seenAs = pr.seen
	m.wake()
}
