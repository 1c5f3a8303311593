package path

import (
	"net/netip"
	"slices"
)

// permit is one relay permission request a step makes.
type permit struct {
	id    RelayID
	r     Relay
	addrs []netip.Addr
}

// permitsLocked returns, for each relay whose permitted addresses are not
// every peer's candidate addresses, the request that makes them so.
func (m *Manager) permitsLocked(relays map[RelayID]Relay) []permit {
	want := map[netip.Addr]struct{}{}
	for _, p := range m.peers {
		for ap := range p.targets() {
			if m.cfg.Policy(ap) == nil {
				want[ap.Addr()] = struct{}{}
			}
		}
	}
	var out []permit
	for id, r := range relays {
		have := m.permitted[id]
		if len(want) == 0 || mapsEqual(have, want) {
			continue
		}
		addrs := make([]netip.Addr, 0, len(want))
		for a := range want {
			addrs = append(addrs, a)
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		m.permitted[id] = want
		out = append(out, permit{id, r, addrs})
	}
	for id := range m.permitted {
		if relays[id] == nil {
			delete(m.permitted, id)
		}
	}
	return out
}

func mapsEqual(a, b map[netip.Addr]struct{}) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}
