package wgdev

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Routes into the tunnel (subnet routes of peers) live in a routing table
// of the interface's own, consulted by a rule for every packet that does
// not carry WireGuardMark, which the device puts on its own UDP packets:
// so a peer's endpoint inside a routed prefix is still reached over the
// underlay, never through the tunnel itself.
const (
	// WireGuardMark is the fwmark of the device's UDP packets (KernelTUN).
	WireGuardMark = 0xca70000
	// RouteRulePriority is the priority of the rule "not fwmark
	// WireGuardMark lookup <table>", before the main table's (32766).
	RouteRulePriority = 5270
	// routeTableBase plus the interface index is the table.
	routeTableBase = 52000
)

// tunnelRoutes is the rule and table state of a KernelTUN device.
type tunnelRoutes struct {
	mu    sync.Mutex
	rules []*netlink.Rule // added, to delete on Close
}

// AddRoute routes p into the tunnel (KernelTUN mode: in the interface's
// table, see WireGuardMark; Userspace mode: nothing to do, the netstack
// sends everything into WireGuard, whose AllowedIPs decide). An IPv6
// prefix is skipped while IPv6 is disabled on the interface.
func (d *Device) AddRoute(p netip.Prefix) error {
	r, err := d.tunnelRoute(p)
	if err != nil || r == nil {
		return err
	}
	if err := d.routes.ensureRule(r.Table, family(p)); err != nil {
		return fmt.Errorf("routing %s into %s: %w", p, d.name, err)
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

func family(p netip.Prefix) int {
	if p.Addr().Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
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
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixIPNet(p), Table: routeTableBase + link.Attrs().Index}
	if p.Addr().Is4() {
		r.Scope = netlink.SCOPE_LINK
	}
	return r, nil
}

// ensureRule adds the rule that sends unmarked packets of family fam to
// table, once.
func (t *tunnelRoutes) ensureRule(table, fam int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.rules {
		if r.Family == fam && r.Table == table {
			return nil
		}
	}
	mask := uint32(WireGuardMark)
	r := netlink.NewRule()
	r.Family, r.Table, r.Priority, r.Mark, r.Mask, r.Invert = fam, table, RouteRulePriority, WireGuardMark, &mask, true
	if err := netlink.RuleAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("adding the rule to table %d: %w", table, err)
	}
	t.rules = append(t.rules, r)
	return nil
}

// close deletes the rules (the table's routes go with the interface).
func (t *tunnelRoutes) close(log *slog.Logger) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.rules {
		if err := netlink.RuleDel(r); err != nil {
			log.Warn("deleting the rule of the routes into the tunnel", "table", r.Table, "err", err)
		}
	}
	t.rules = nil
}

// BypassRoute keeps traffic to p off the tunnel's table (a rule "to p
// lookup main" before it): an exit node's client reaching its own LAN
// (KernelTUN mode; nothing in Userspace mode).
func (d *Device) BypassRoute(p netip.Prefix) error {
	if d.mode != KernelTUN || (p.Addr().Is6() && ipv6Disabled(d.name)) {
		return nil
	}
	r := netlink.NewRule()
	r.Family, r.Table, r.Priority, r.Dst = family(p), unix.RT_TABLE_MAIN, RouteRulePriority-10, prefixIPNet(p.Masked())
	if err := netlink.RuleAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("keeping %s off the tunnel: %w", p, err)
	}
	d.routes.mu.Lock()
	d.routes.rules = append(d.routes.rules, r)
	d.routes.mu.Unlock()
	return nil
}
