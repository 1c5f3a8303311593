package path

import (
	"bytes"
	"net/netip"
	"slices"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// PathKind is the kind of path a peer's packets take.
type PathKind string

const (
	PathDirect PathKind = "direct" // straight between the two agents' sockets
	PathRelay  PathKind = "relay"  // through a relay (ours, the peer's, or both)
	PathNone   PathKind = "none"   // no path answers probes
)

// PeerStatus is the path state of one peer, for `certmesh status`.
type PeerStatus struct {
	Peer certs.WireGuardKey
	Path PathKind
	// Endpoint is the chosen path in Route.String form ("" if none).
	Endpoint string
	// Relay is the relay in use: our allocation's relayed address, or
	// the peer's relay candidate (invalid on a direct path).
	Relay netip.AddrPort
	// RTT is the chosen path's last probe round trip.
	RTT time.Duration
	// SeenAs is the address the peer last saw our probes come from.
	SeenAs netip.AddrPort
}

// Peers returns the path state of every admitted peer, by key.
func (m *Manager) Peers() []PeerStatus {
	relays := m.b.Relays()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]PeerStatus, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, p.status(relays))
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return bytes.Compare(a.Peer[:], b.Peer[:]) })
	return out
}

// Peer returns the path state of one peer.
func (m *Manager) Peer(key certs.WireGuardKey) (PeerStatus, bool) {
	relays := m.b.Relays()
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.peers[key]
	if p == nil {
		return PeerStatus{}, false
	}
	return p.status(relays), true
}

func (p *peer) status(relays map[RelayID]Relay) PeerStatus {
	st := PeerStatus{Peer: p.key, Path: PathNone, SeenAs: p.seenAs}
	rs := p.routes[p.want]
	if rs == nil || !p.want.Addr.IsValid() {
		return st
	}
	st.Path, st.Endpoint, st.RTT = p.pathKind(p.want), p.want.String(), rs.rtt
	switch {
	case p.want.Relayed():
		if r := relays[p.want.Relay]; r != nil {
			st.Relay = r.RelayedAddr()
		}
	case rs.relayed:
		st.Relay = p.want.Addr
	}
	return st
}
