package agent

import (
	"slices"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// A peer's endpoint hints are tried in turn: while no handshake with the
// peer is fresh, the agent moves it to its next allowed hint every
// EndpointRotateAfter (some four of WireGuard's 5 s handshake retries), so
// that a hint that leads nowhere — a stale address, or one a coordinator
// put first — does not keep the peer unreachable. What each destination
// receives meanwhile is bounded by the device's handshake limit.
const (
	// EndpointRotateAfter is how long a peer stays on an endpoint that
	// brings no handshake.
	EndpointRotateAfter = 20 * time.Second
	// handshakeFresh: WireGuard drops a session this old (RejectAfterTime).
	handshakeFresh = 180 * time.Second
)

// rotateLocked moves each peer that has had no fresh handshake on its
// current endpoint for EndpointRotateAfter to its next hint.
func (m *peerManager) rotateLocked() {
	now := m.now()
	var due []*verifiedPeer
	for _, p := range m.peers {
		if len(p.endpoints) > 1 && now.Sub(p.epSince) >= EndpointRotateAfter {
			due = append(due, p)
		}
	}
	if len(due) == 0 {
		return
	}
	stats, err := m.dev.Peers()
	if err != nil {
		return
	}
	last := make(map[certs.WireGuardKey]time.Time, len(stats))
	for _, s := range stats {
		last[s.PublicKey] = s.LastHandshake
	}
	for _, p := range due {
		if hs := last[p.id.WireGuardKey]; !hs.IsZero() && now.Sub(hs) < handshakeFresh {
			p.epSince = now // the path works; look again later
			continue
		}
		next := append(slices.Clone(p.endpoints[1:]), p.endpoints[0])
		if err := m.dev.UpsertPeer(peerConfig(p.id, next)); err != nil {
			m.log.Warn("moving a peer to its next endpoint", "device", p.id.DeviceID, "err", err)
			continue
		}
		p.endpoints, p.epSince = next, now
		if err := m.dev.Kick(p.id.WireGuardKey); err != nil {
			m.log.Warn("starting a handshake with a peer", "device", p.id.DeviceID, "err", err)
		}
		m.log.Debug("no handshake with the peer: trying its next endpoint", "device", p.id.DeviceID, "endpoint", next[0])
	}
}
