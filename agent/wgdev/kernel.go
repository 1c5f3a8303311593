package wgdev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// configureKernelInterface gives the TUN interface name its overlay
// addresses, sets it up and routes cfg.OverlayRoutes into it. IPv6 items
// are skipped with a warning when IPv6 is disabled for the interface (or
// in the whole network namespace).
func configureKernelInterface(ctx context.Context, log *slog.Logger, name string, cfg Config) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("looking up interface %s: %w", name, err)
	}
	v6 := true
	skipV6 := func(what string, p netip.Prefix) bool {
		if !p.Addr().Is6() || p.Addr().Is4In6() {
			return false
		}
		if v6 && ipv6Disabled(name) {
			log.Warn("IPv6 is disabled; skipping IPv6 configuration of the interface", "interface", name)
			v6 = false
		}
		if !v6 {
			log.Debug("skipping IPv6 "+what, "interface", name, "prefix", p.String())
		}
		return !v6
	}

	for _, p := range cfg.Addresses {
		if skipV6("address", p) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("configuring interface %s: %w", name, err)
		}
		addr := &netlink.Addr{IPNet: prefixIPNet(p)}
		if p.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD // usable at once; the overlay has no duplicates to detect
		}
		if err := netlink.AddrReplace(link, addr); err != nil {
			if p.Addr().Is6() && ipv6Disabled(name) {
				skipV6("address", p)
				continue
			}
			return fmt.Errorf("adding address %v to interface %s: %w", p, name, err)
		}
	}

	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("setting interface %s up: %w", name, err)
	}

	for _, p := range cfg.OverlayRoutes {
		if skipV6("route", p) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("configuring interface %s: %w", name, err)
		}
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixIPNet(p.Masked())}
		if p.Addr().Is4() {
			r.Scope = netlink.SCOPE_LINK
		}
		if err := netlink.RouteReplace(r); err != nil {
			if p.Addr().Is6() && ipv6Disabled(name) {
				skipV6("route", p)
				continue
			}
			return fmt.Errorf("adding route %v via interface %s: %w", p, name, err)
		}
	}
	return nil
}

// ipv6Disabled reports whether IPv6 is unavailable on interface name: the
// kernel has no IPv6, or disable_ipv6 is set for it.
func ipv6Disabled(name string) bool {
	if _, err := os.Stat("/proc/sys/net/ipv6"); errors.Is(err, os.ErrNotExist) {
		return true
	}
	b, err := os.ReadFile(filepath.Join("/proc/sys/net/ipv6/conf", name, "disable_ipv6"))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	return strings.TrimSpace(string(b)) == "1"
}

// prefixIPNet converts p to the net.IPNet netlink wants, keeping the
// address bits (an interface address is not masked).
func prefixIPNet(p netip.Prefix) *net.IPNet {
	a := p.Addr().Unmap()
	bits := p.Bits()
	if p.Addr().Is4In6() && bits >= 96 {
		bits -= 96
	}
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
}
