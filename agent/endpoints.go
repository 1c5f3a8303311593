package agent

import (
	"fmt"
	"net"
	"net/netip"
)

// localEndpoints lists the host's global unicast addresses (not loopback,
// not the tunnel) with the WireGuard port, as endpoints to advertise.
func localEndpoints(port int, skipIface string) ([]netip.AddrPort, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	var out []netip.AddrPort
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || ifc.Name == skipIface {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok || !ip.IsGlobalUnicast() {
				continue
			}
			out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
		}
	}
	return out, nil
}

// endpointPolicy decides which endpoint hints the agent hands WireGuard.
// Hints come from the coordinator, which is untrusted: unchecked, it could
// aim every agent's handshakes at any address and port (reflection). The
// device enforces the same policy on every packet it sends (wgdev's
// HandshakeLimit.Refuse), so no path (hint, roaming) gets around it.
type endpointPolicy struct {
	overlay []netip.Prefix // the mesh's own ranges: never an underlay address
	// allowLoopback: the agent advertises a loopback endpoint itself (a
	// mesh on one host: tests, make demo), so loopback peers are expected.
	allowLoopback bool
}

func newEndpointPolicy(overlay []netip.Prefix, advertised []netip.Addr) endpointPolicy {
	p := endpointPolicy{overlay: overlay}
	for _, a := range advertised {
		p.allowLoopback = p.allowLoopback || a.Unmap().IsLoopback()
	}
	return p
}

// check says why ep may not be used as a peer's endpoint (nil if it may).
func (p endpointPolicy) check(ep netip.AddrPort) error {
	a := ep.Addr().Unmap()
	switch {
	case !ep.IsValid() || ep.Port() == 0:
		return fmt.Errorf("%s: no address and port", ep)
	case a.IsUnspecified():
		return fmt.Errorf("%s: unspecified address", ep)
	case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%s: multicast or broadcast address", ep)
	case a.IsLinkLocalUnicast():
		return fmt.Errorf("%s: link-local address", ep)
	case a.IsLoopback() && !p.allowLoopback:
		return fmt.Errorf("%s: loopback address (accepted only by an agent that advertises a loopback endpoint itself)", ep)
	}
	for _, o := range p.overlay {
		if o.Contains(a) {
			return fmt.Errorf("%s: inside the mesh's overlay range %s", ep, o)
		}
	}
	return nil
}

// refuse is check as the device's send filter.
func (p endpointPolicy) refuse(ep netip.AddrPort) bool { return p.check(ep) != nil }

// usable splits hints into those the policy allows, in order, and the
// reasons for the others.
func (p endpointPolicy) usable(eps []netip.AddrPort) (ok []netip.AddrPort, refused []string) {
	for _, ep := range eps {
		if err := p.check(ep); err != nil {
			refused = append(refused, err.Error())
			continue
		}
		ok = append(ok, netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port()))
	}
	return ok, refused
}
