package wgdev

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
)

// RouteMetric is the metric of the routes AddRoute puts into the tunnel:
// above 0, so that a route the host already has for the same prefix (its
// own LAN, connected at metric 0) stays the one used.
const RouteMetric = 50

// AddRoute routes p into the tunnel (KernelTUN mode: a route via the
// interface, metric RouteMetric; Userspace mode: nothing to do, the
// netstack sends everything into WireGuard, whose AllowedIPs decide).
// An IPv6 prefix is skipped while IPv6 is disabled on the interface.
func (d *Device) AddRoute(p netip.Prefix) error {
	r, err := d.tunnelRoute(p)
	if err != nil || r == nil {
		return err
	}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("routing %s into %s: %w", p, d.name, err)
	}
	return nil
}

// DelRoute removes a route AddRoute added; a route already gone is not an
// error.
func (d *Device) DelRoute(p netip.Prefix) error {
	r, err := d.tunnelRoute(p)
	if err != nil || r == nil {
		return err
	}
	if err := netlink.RouteDel(r); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("removing the route of %s from %s: %w", p, d.name, err)
	}
	return nil
}

// tunnelRoute is the netlink route of p via the interface (nil: none to
// make in this mode).
func (d *Device) tunnelRoute(p netip.Prefix) (*netlink.Route, error) {
	if d.mode != KernelTUN {
		return nil, nil
	}
	if !p.IsValid() || p != p.Masked() {
		return nil, fmt.Errorf("route %v is not a masked prefix", p)
	}
	if p.Addr().Is6() && ipv6Disabled(d.name) {
		return nil, nil
	}
	link, err := netlink.LinkByName(d.name)
	if err != nil {
		return nil, fmt.Errorf("looking up interface %s: %w", d.name, err)
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixIPNet(p), Priority: RouteMetric}
	if p.Addr().Is4() {
		r.Scope = netlink.SCOPE_LINK
	}
	return r, nil
}
