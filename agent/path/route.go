package path

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// RelayID names one of this agent's relay allocations (see
// [Bind.AttachRelay]). 0 means no relay: the datagram goes straight out of
// (or came straight in on) the WireGuard socket.
type RelayID uint16

// Route is where a datagram goes to or came from: an address, reached
// directly or through one of this agent's relay allocations.
type Route struct {
	Relay RelayID        // 0: direct
	Addr  netip.AddrPort // the far end's address (unmapped)
}

// relayPrefix starts the text form of a relayed route.
const relayPrefix = "relay:"

// String is the route's endpoint form, as WireGuard's UAPI takes it:
// "addr:port" for a direct route, "relay:<n>:<addr:port>" for one through
// relay allocation n.
func (r Route) String() string {
	if r.Relay == 0 {
		return r.Addr.String()
	}
	return relayPrefix + strconv.Itoa(int(r.Relay)) + ":" + r.Addr.String()
}

// Relayed reports whether the route goes through one of this agent's relay
// allocations.
func (r Route) Relayed() bool { return r.Relay != 0 }

// ParseRoute parses the text form of a Route (see Route.String).
func ParseRoute(s string) (Route, error) {
	var r Route
	rest := s
	if tail, ok := strings.CutPrefix(s, relayPrefix); ok {
		id, addr, ok := strings.Cut(tail, ":")
		if !ok {
			return r, fmt.Errorf("parsing route %q: want relay:<n>:<addr:port>", s)
		}
		n, err := strconv.ParseUint(id, 10, 16)
		if err != nil || n == 0 {
			return r, fmt.Errorf("parsing route %q: relay number must be 1..65535", s)
		}
		r.Relay, rest = RelayID(n), addr
	}
	ap, err := netip.ParseAddrPort(rest)
	if err != nil {
		return r, fmt.Errorf("parsing route %q: %w", s, err)
	}
	if ap.Port() == 0 || !ap.Addr().IsValid() {
		return r, errors.New("parsing route: no address and port")
	}
	r.Addr = unmap(ap)
	return r, nil
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// relayEndpoint is the conn.Endpoint of a relayed route.
type relayEndpoint struct{ r Route }

func (e *relayEndpoint) ClearSrc()           {}
func (e *relayEndpoint) SrcToString() string { return "" }

// DstToString is the final destination, "addr:port", not the route:
// wireguard-go prints it as the peer's endpoint in its UAPI get output,
// which `wg show` parses as an address (and crashed on the relay form).
// certmesh status shows the route (the path layer's).
func (e *relayEndpoint) DstToString() string { return e.r.Addr.String() }
func (e *relayEndpoint) DstIP() netip.Addr   { return e.r.Addr.Addr() }
func (e *relayEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

// DstAddrPort is the final destination, for wgdev's handshake limiter and
// endpoint policy (which judge the peer's address, however it is reached).
func (e *relayEndpoint) DstAddrPort() netip.AddrPort { return e.r.Addr }

// DstToBytes feeds WireGuard's cookie MACs: the relay number and address.
func (e *relayEndpoint) DstToBytes() []byte {
	b, _ := e.r.Addr.MarshalBinary()
	return append([]byte{'r', byte(e.r.Relay >> 8), byte(e.r.Relay)}, b...)
}
