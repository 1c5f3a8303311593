package netns

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
)

// LAN is a subnet of its own on a bridge in namespace SwitchNS, not
// connected to the network: a site's LAN that only a host joined to both
// (a subnet router: [LAN.Join]) connects to anything. Hosts that live on
// it alone come from [LAN.AddHost].
type LAN struct {
	Name     string
	Prefix   netip.Prefix
	SwitchNS string

	net  *Network
	next int // addresses handed out; guarded by net.mu
}

// AddLAN creates the LAN name with subnet prefix (IPv4, at least /29).
func (n *Network) AddLAN(ctx context.Context, name string, prefix netip.Prefix) (*LAN, error) {
	prefix = prefix.Masked()
	if !prefix.Addr().Is4() || prefix.Bits() > 29 {
		return nil, fmt.Errorf("netns: add LAN %q: %s: want an IPv4 subnet of at least /29", name, prefix)
	}
	if err := checkHostName(name); err != nil {
		return nil, err
	}
	if err := n.claimName(name); err != nil {
		return nil, fmt.Errorf("netns: add LAN %q: %w", name, err)
	}
	l := &LAN{Name: name, Prefix: prefix, SwitchNS: n.prefix + "-" + name, net: n}
	if err := n.createSwitch(ctx, l.SwitchNS); err != nil {
		return nil, fmt.Errorf("netns: add LAN %q: %w", name, err)
	}
	return l, nil
}

// nextAddr takes the LAN's next address and the switch port's index.
func (l *LAN) nextAddr() (netip.Prefix, int, error) {
	l.net.mu.Lock()
	defer l.net.mu.Unlock()
	a, err := nthAddr(l.Prefix, l.next+1)
	if err != nil {
		return netip.Prefix{}, 0, err
	}
	l.next++
	return netip.PrefixFrom(a, l.Prefix.Bits()), l.next, nil
}

// Join connects h to the LAN through a new interface iface with the LAN's
// next address, which it returns.
func (l *LAN) Join(ctx context.Context, h *Host, iface string) (netip.Addr, error) {
	p, idx, err := l.nextAddr()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("netns: %s joining LAN %s: %w", h.Name, l.Name, err)
	}
	if err := attach(ctx, h.NS, iface, l.SwitchNS, "l"+strconv.Itoa(idx), p); err != nil {
		return netip.Addr{}, fmt.Errorf("netns: %s joining LAN %s: %w", h.Name, l.Name, err)
	}
	return p.Addr(), nil
}

// AddHost creates host name on the LAN alone (its eth0 has the LAN's next
// address; it has no other interface and no default route).
func (l *LAN) AddHost(ctx context.Context, name string) (*Host, error) {
	n := l.net
	if err := checkHostName(name); err != nil {
		return nil, err
	}
	if err := n.claimName(name); err != nil {
		return nil, fmt.Errorf("netns: add host %q on LAN %s: %w", name, l.Name, err)
	}
	p, idx, err := l.nextAddr()
	if err != nil {
		return nil, fmt.Errorf("netns: add host %q on LAN %s: %w", name, l.Name, err)
	}
	h := &Host{Name: name, NS: n.prefix + "-" + name, Addr: p.Addr(), Prefix: p, net: n}
	if err := n.createNS(ctx, h.NS); err != nil {
		return nil, fmt.Errorf("netns: add host %q on LAN %s: %w", name, l.Name, err)
	}
	if _, err := runIP(ctx, "-n", h.NS, "link", "set", "lo", "up"); err != nil {
		return nil, fmt.Errorf("netns: add host %q on LAN %s: %w", name, l.Name, err)
	}
	if err := attach(ctx, h.NS, HostIface, l.SwitchNS, "l"+strconv.Itoa(idx), p); err != nil {
		return nil, fmt.Errorf("netns: add host %q on LAN %s: %w", name, l.Name, err)
	}
	n.mu.Lock()
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()
	return h, nil
}

// CutOff drops (on) or stops dropping (!on) everything h sends and
// receives on its network interface (eth0), with an nftables table of its
// own: the host is gone from the network, its other interfaces (a LAN)
// stay up. It needs nft in PATH.
func (h *Host) CutOff(ctx context.Context, on bool) error {
	if !on {
		_, err := h.Run(ctx, "nft", "delete", "table", "inet", "netns_cut")
		return err
	}
	_, err := h.Run(ctx, "nft", "add table inet netns_cut { "+
		"chain in { type filter hook input priority -10; policy accept; iifname \""+HostIface+"\" drop; }; "+
		"chain out { type filter hook output priority -10; policy accept; oifname \""+HostIface+"\" drop; }; }")
	return err
}
