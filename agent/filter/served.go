package filter

import (
	"net/netip"
	"slices"
)

// deliverable reports whether a new inbound flow to dst may be handed to
// the policy: dst is one of this node's addresses, or it is inside a
// prefix the node serves and no peer holds it. The second condition keeps
// an exit node (which serves 0.0.0.0/0 and ::/0) from forwarding a peer's
// packet to another peer's overlay address: mesh traffic goes to its
// destination directly, where that node's own filter decides it, never
// through a router that could make it appear to come from the router.
func (d *Device) deliverable(reg *regime, dst netip.Addr) bool {
	if slices.Contains(d.local, dst) {
		return true
	}
	if !slices.ContainsFunc(reg.served, func(p netip.Prefix) bool { return p.Contains(dst) }) {
		return false
	}
	if reg.peers != nil {
		if _, held := reg.peers.Lookup(dst); held {
			return false
		}
	}
	return true
}

// unmapAll returns addrs in the form packets carry them: an IPv4 address
// in its 4-byte form (an IPv4-mapped IPv6 address unmapped).
func unmapAll(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a.IsValid() {
			out = append(out, a.Unmap())
		}
	}
	return out
}
