package netns

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Mapping is how a [Router]'s NAT picks the public source port of a flow.
type Mapping string

// The mappings.
const (
	// EndpointIndependent keeps the LAN host's source port where it can
	// (nft masquerade), so one socket is seen from outside at the same
	// address and port whichever destination it sends to: the NAT that
	// hole punching works through.
	EndpointIndependent Mapping = "endpoint-independent"
	// Symmetric picks a random port for every new flow (nft masquerade
	// random,fully-random), so one socket is seen at a different port by
	// every destination: the NAT that defeats hole punching.
	Symmetric Mapping = "symmetric"
)

// RouterOptions configure [Network.AddRouter]. The zero value is a home
// router: endpoint-independent NAT for 192.168.1.0/24.
type RouterOptions struct {
	// LAN is the subnet behind the router; the router takes its first
	// address, hosts the next ones. Routers' LANs are separate, so they
	// may use the same subnet. Default: 192.168.1.0/24.
	LAN netip.Prefix
	// Mapping defaults to EndpointIndependent.
	Mapping Mapping
	// BlockUDP drops UDP from the LAN to the outside (TCP, ICMP pass), as
	// some corporate and hotel networks do.
	BlockUDP bool
}

// Router is a host on the network (its eth0, address Addr, is the
// public side) that routes a LAN of its own (eth1, address LANAddr, on a
// bridge in namespace SwitchNS) with NAT: LAN hosts reach the network
// from the router's address, replies come back, and nothing from the
// network reaches the LAN unasked (forwarding allows only LAN-initiated
// flows and their replies). Add hosts behind it with [Router.AddHost].
type Router struct {
	*Host
	LAN      netip.Prefix
	LANAddr  netip.Addr
	SwitchNS string
	Opts     RouterOptions

	nextIdx int // LAN hosts so far; guarded by the network's mu
}

// LANIface is the router's interface on its LAN.
const LANIface = "eth1"

// AddRouter adds host name to the network as a router with NAT for a new
// LAN (see [Router]). It needs nft (nftables) in PATH.
func (n *Network) AddRouter(ctx context.Context, name string, opts RouterOptions) (*Router, error) {
	if !opts.LAN.IsValid() {
		opts.LAN = netip.MustParsePrefix("192.168.1.0/24")
	}
	opts.LAN = opts.LAN.Masked()
	if opts.Mapping == "" {
		opts.Mapping = EndpointIndependent
	}
	if opts.Mapping != EndpointIndependent && opts.Mapping != Symmetric {
		return nil, fmt.Errorf("netns: add router %q: mapping %q: want %q or %q", name, opts.Mapping, EndpointIndependent, Symmetric)
	}
	if !opts.LAN.Addr().Is4() || opts.LAN.Bits() > 29 {
		return nil, fmt.Errorf("netns: add router %q: LAN %s: want an IPv4 subnet of at least /29", name, opts.LAN)
	}
	gw, err := nthAddr(opts.LAN, 1)
	if err != nil {
		return nil, err
	}
	if err := n.claimName(name + ".lan"); err != nil { // the LAN's switch namespace
		return nil, fmt.Errorf("netns: add router %q: %w", name, err)
	}
	h, err := n.AddHost(ctx, name)
	if err != nil {
		return nil, err
	}
	r := &Router{Host: h, LAN: opts.LAN, LANAddr: gw, SwitchNS: h.NS + ".lan", Opts: opts}
	if err := n.setupRouter(ctx, r); err != nil {
		return nil, fmt.Errorf("netns: add router %q: %w", name, err)
	}
	n.log.Debug("netns: router added", "router", name, "addr", h.Addr, "lan", opts.LAN, "mapping", opts.Mapping, "block_udp", opts.BlockUDP)
	return r, nil
}

// setupRouter gives the router its LAN and its NAT. On error the
// namespaces created are left to Close.
func (n *Network) setupRouter(ctx context.Context, r *Router) error {
	if err := n.createSwitch(ctx, r.SwitchNS); err != nil {
		return err
	}
	if err := attach(ctx, r.NS, LANIface, r.SwitchNS, "p0", netip.PrefixFrom(r.LANAddr, r.LAN.Bits())); err != nil {
		return err
	}
	if err := r.Do(func() error { return writeSysctl("net/ipv4/ip_forward", "1") }); err != nil {
		return fmt.Errorf("enabling forwarding: %w", err)
	}
	return r.nft(ctx, natRules(r.LAN, r.Opts))
}

// natRules is the router's nftables ruleset: masquerade what leaves eth0
// from the LAN, forward only what the LAN started (and its replies), and
// drop unsolicited UDP to the router itself, as a home router's firewall
// does. Without that drop, a peer's punching probe to the router's
// mapped port is taken in locally, its conntrack entry holds that port,
// and the LAN host's own packet to that peer gets a fresh port instead:
// no NAT keeps its mapping endpoint-independent like that.
func natRules(lan netip.Prefix, o RouterOptions) string {
	flags := ""
	if o.Mapping == Symmetric {
		flags = " random,fully-random"
	}
	block := ""
	if o.BlockUDP {
		block = "\t\tiifname \"" + LANIface + "\" meta l4proto udp counter drop\n"
	}
	return "table ip netns_nat {\n" +
		"\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n" +
		"\t\toifname \"" + HostIface + "\" ip saddr " + lan.String() + " masquerade" + flags + "\n\t}\n" +
		"\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n" +
		"\t\tiifname \"" + HostIface + "\" meta l4proto udp ct state new drop\n\t}\n" +
		"\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n" +
		"\t\tct state established,related accept\n" + block +
		"\t\tiifname \"" + LANIface + "\" oifname \"" + HostIface + "\" accept\n\t}\n}\n"
}

// SetBlockUDP blocks UDP from the LAN, or lifts the block, at run time (a
// hotel network that starts letting UDP through): the router's ruleset is
// replaced in one nft transaction; connections it tracks stay.
func (r *Router) SetBlockUDP(ctx context.Context, block bool) error {
	o := r.Opts
	o.BlockUDP = block
	if err := r.nft(ctx, "delete table ip netns_nat\n"+natRules(r.LAN, o)); err != nil {
		return fmt.Errorf("netns: router %s: %w", r.Name, err)
	}
	r.Opts = o
	return nil
}

// nft loads ruleset into the router's namespace (nft -f).
func (r *Router) nft(ctx context.Context, ruleset string) error {
	f, err := os.CreateTemp("", "netns-nft-*.conf")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(ruleset)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if _, err := r.Run(ctx, "nft", "-f", f.Name()); err != nil {
		return fmt.Errorf("loading NAT rules: %w", err)
	}
	return nil
}

// AddHost adds a host behind the router: namespace "<prefix>-<name>" with
// eth0 on the router's LAN, the LAN's next address, and a default route
// through the router.
func (r *Router) AddHost(ctx context.Context, name string) (*Host, error) {
	n := r.net
	if err := checkHostName(name); err != nil {
		return nil, err
	}
	h, idx, err := n.reserveHost(name, r)
	if err != nil {
		return nil, fmt.Errorf("netns: add host %q behind %s: %w", name, r.Name, err)
	}
	setup := func() error {
		if err := n.createNS(ctx, h.NS); err != nil {
			return err
		}
		if _, err := runIP(ctx, "-n", h.NS, "link", "set", "lo", "up"); err != nil {
			return err
		}
		if err := attach(ctx, h.NS, HostIface, r.SwitchNS, "p"+strconv.Itoa(idx), h.Prefix); err != nil {
			return err
		}
		_, err := runIP(ctx, "-n", h.NS, "route", "add", "default", "via", r.LANAddr.String())
		return err
	}
	if err := setup(); err != nil {
		n.abandonHost(h)
		return nil, fmt.Errorf("netns: add host %q behind %s: %w", name, r.Name, err)
	}
	n.mu.Lock()
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()
	n.log.Debug("netns: host added behind router", "host", name, "router", r.Name, "addr", h.Addr)
	return h, nil
}

// claimName reserves a name in the network's namespace names.
func (n *Network) claimName(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.names[name] {
		return fmt.Errorf("name %q already taken", name)
	}
	n.names[name] = true
	return nil
}

// Router returns the router a host sits behind, or nil for a host on the
// network itself.
func (h *Host) Router() *Router { return h.router }

// writeSysctl writes value to /proc/sys/<key> in the calling thread's
// network namespace (call it inside [Host.Do]).
func writeSysctl(key, value string) error {
	path := filepath.Join("/proc/sys", filepath.FromSlash(key))
	if err := os.WriteFile(path, []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), value, err)
	}
	return nil
}
