package certs

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// MaxRoutes bounds the prefixes one machine certificate may route.
const MaxRoutes = 64

// The reasons Verify rejects a machine certificate's routes or services for
// (a certificate the CA should never have signed: the whole bundle is
// refused, like any other malformed profile field).
const (
	ReasonRoutes   Reason = "routes"   // extension .4 malformed, non-canonical, duplicated, too many, or overlapping the overlay
	ReasonServices Reason = "services" // extension .7 malformed, invalid, duplicated or too many
)

// IsExitRoute reports whether p is a default route (0.0.0.0/0 or ::/0): a
// device certified for it may be used as an exit node.
func IsExitRoute(p netip.Prefix) bool { return p.IsValid() && p.Bits() == 0 }

// ParseRoute reads a route in canonical CIDR form: a masked prefix
// ("10.0.0.0/24", not "10.0.0.1/24"), IPv4 not IPv6-mapped.
func ParseRoute(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("route %q: %w", s, err)
	}
	if p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("route %q: want a plain IPv4 or IPv6 prefix", s)
	}
	if p != p.Masked() || p.String() != s {
		return netip.Prefix{}, fmt.Errorf("route %q is not canonical (want %s)", s, p.Masked())
	}
	return p, nil
}

// CheckRoutes validates the routes of a machine certificate: at most
// MaxRoutes, canonical, distinct, and none overlapping an overlay range
// (the overlay's own addresses are certified as IP SANs, never routed)
// except the default routes of an exit node, which contain everything.
// The CA checks requests with it and Verify checks certificates with it.
func CheckRoutes(routes []netip.Prefix, overlays []netip.Prefix) error {
	if len(routes) > MaxRoutes {
		return fmt.Errorf("%d routes, at most %d allowed", len(routes), MaxRoutes)
	}
	for i, r := range routes {
		if !r.IsValid() || r != r.Masked() || r.Addr().Is4In6() || r.Addr().Zone() != "" {
			return fmt.Errorf("route %s is not a canonical prefix", r)
		}
		if slices.Contains(routes[:i], r) {
			return fmt.Errorf("route %s appears twice", r)
		}
		if IsExitRoute(r) {
			continue
		}
		for _, o := range overlays {
			if r.Overlaps(o) {
				return fmt.Errorf("route %s overlaps the overlay range %s", r, o)
			}
		}
	}
	return nil
}

// stringsOf is vs as text: for routes, the content of extension .4 (a
// SEQUENCE OF UTF8String, each a canonical CIDR prefix).
func stringsOf[T fmt.Stringer](vs []T) []string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.String()
	}
	return s
}

// parseRoutesExt reads extension .4 (none if absent) and checks it against
// the overlay ranges.
func parseRoutesExt(c *x509.Certificate, overlays []netip.Prefix) ([]netip.Prefix, error) {
	strs, ok, err := parseStringsExt(c, OIDRoutes, "routes")
	if err != nil || !ok {
		return nil, err
	}
	if len(strs) == 0 {
		return nil, fmt.Errorf("routes extension is empty (omit it instead)")
	}
	if len(strs) > MaxRoutes {
		return nil, fmt.Errorf("routes extension: %d routes, at most %d allowed", len(strs), MaxRoutes)
	}
	routes := make([]netip.Prefix, len(strs))
	for i, s := range strs {
		if routes[i], err = ParseRoute(s); err != nil {
			return nil, fmt.Errorf("routes extension: %w", err)
		}
	}
	if err := CheckRoutes(routes, overlays); err != nil {
		return nil, fmt.Errorf("routes extension: %w", err)
	}
	return routes, nil
}

// chainOverlays returns the overlay ranges a verified chain certifies: the
// permitted IP ranges of its CA certificates' name constraints, and the
// leaf's own addresses as host prefixes (so that a route never covers a
// certified address even under an unconstrained CA).
func chainOverlays(chains [][]*x509.Certificate, addrs []netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, chain := range chains {
		for _, c := range chain {
			for _, n := range c.PermittedIPRanges {
				if p, ok := prefixOfIPNet(n); ok && !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

func prefixOfIPNet(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	ones, bits := n.Mask.Size()
	if !ok || bits == 0 || bits != len(n.IP)*8 {
		return netip.Prefix{}, false // a mask x509 would not have parsed
	}
	return netip.PrefixFrom(a.Unmap(), ones-(bits-a.Unmap().BitLen())).Masked(), true
}
