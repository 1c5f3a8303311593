package relay

import (
	"net"
	"net/netip"
)

// peerPolicy decides where an allocation may send (TURN permissions are
// per peer IP; the port is checked per datagram by relayConn).
//
// Refused always: the unspecified address, multicast and broadcast,
// link-local (169.254/16 holds cloud metadata services, fe80::/10), every
// address of the relay host itself (its interfaces, all of loopback), and
// the operator's deny list. One exception: the relayed IP (the address in
// this relay's allocations), and there only the ports of live allocations
// of this relay, which relayConn checks per datagram: two agents relayed
// by the same relay send to each other's relayed address, but nobody
// reaches the TURN ports themselves, the HTTPS port or any other service
// on the host.
type peerPolicy struct {
	relayIP netip.Addr
	own     map[netip.Addr]bool // the relay host's interface addresses
	deny    []netip.Prefix
}

// hostAddrs are the relay host's interface addresses plus extra.
func hostAddrs(extra ...netip.Addr) map[netip.Addr]bool {
	own := map[netip.Addr]bool{}
	for _, a := range extra {
		own[a.Unmap()] = true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			own[p.Addr().Unmap()] = true
		}
	}
	return own
}

// isHost reports whether ip is an address of the relay host.
func (p *peerPolicy) isHost(ip netip.Addr) bool { return ip.IsLoopback() || p.own[ip] }

// permit says whether an allocation may have a permission for ip.
func (p *peerPolicy) permit(ip netip.Addr) bool {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return false
	}
	for _, d := range p.deny {
		if d.Contains(ip) {
			return false
		}
	}
	if ip == p.relayIP {
		return true // only to live allocations: relayConn checks the port
	}
	return !p.isHost(ip)
}

// handler fits turn.PermissionHandler.
func (p *peerPolicy) handler(_ net.Addr, peer net.IP) bool {
	ip, ok := netip.AddrFromSlice(peer)
	return ok && p.permit(ip)
}
