package agent

import (
	"github.com/certmesh/certmesh/agent/dns"
)

// feedNamesLocked makes the resolver's table (agent/dns) the verified peer
// set and this node, nothing else: it runs on every change of the set
// (admission, removal, revocation, expiry, renewal of our own certificate),
// so a peer that leaves the set leaves DNS with the same change. Names,
// addresses and services come from the verified certificates only, never
// from what the coordinator relays beside them.
func (m *peerSet) feedNamesLocked() {
	if m.names == nil {
		return
	}
	peers := make([]dns.Peer, 0, len(m.peers)+1)
	if m.self.DeviceID != "" {
		peers = append(peers, dns.PeerOf(m.self))
	}
	for _, p := range m.peers {
		peers = append(peers, dns.PeerOf(p.id))
	}
	m.names.Set(peers)
}
