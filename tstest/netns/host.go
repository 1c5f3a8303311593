package netns

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
)

// Host is a network namespace attached to the network's bridge through its
// eth0 interface.
type Host struct {
	// Name is the name given to [Network.AddHost].
	Name string
	// NS is the network namespace name, "<prefix>-<name>".
	NS string
	// Addr is eth0's address in the network's subnet.
	Addr netip.Addr
	// Prefix is Addr with the subnet's prefix length, as configured on eth0.
	Prefix netip.Prefix
	// Gateway is the default route of a host behind a [Router] (the
	// router's LAN address); zero for hosts on the network itself, which
	// have no default route.
	Gateway netip.Addr

	net    *Network
	router *Router // the router a LAN host sits behind, or nil
}

// AddHost creates namespace "<prefix>-<name>" with loopback up and an eth0
// interface that has the next free subnet address and is connected to the
// bridge. ctx bounds the setup commands only. On error the namespace is
// removed again.
func (n *Network) AddHost(ctx context.Context, name string) (*Host, error) {
	if err := checkHostName(name); err != nil {
		return nil, err
	}
	h, idx, err := n.reserveHost(name, nil)
	if err != nil {
		return nil, fmt.Errorf("netns: add host %q: %w", name, err)
	}
	if err := n.setupHost(ctx, h, idx); err != nil {
		n.abandonHost(h)
		return nil, fmt.Errorf("netns: add host %q: %w", name, err)
	}

	n.mu.Lock()
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()
	n.log.Debug("netns: host added", "host", name, "ns", h.NS, "addr", h.Addr)
	return h, nil
}

func checkHostName(name string) error {
	if !hostNameRE.MatchString(name) || len(name) > maxHostNameLen || name == switchSuffix {
		return fmt.Errorf("netns: add host %q: invalid name (want letters, digits, '_', '.', '-', at most %d chars, not %q)", name, maxHostNameLen, switchSuffix)
	}
	return nil
}

// reserveHost claims the name, an index and an address: on the network's
// subnet, or on r's LAN if r is set.
func (n *Network) reserveHost(name string, r *Router) (*Host, int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, 0, errClosed
	}
	if n.names[name] {
		return nil, 0, fmt.Errorf("host already exists")
	}
	idx, addr, err := n.nextAddrLocked(r)
	if err != nil {
		return nil, 0, err
	}
	n.names[name] = true
	h := &Host{Name: name, NS: n.prefix + "-" + name, Addr: addr, net: n, router: r}
	h.Prefix = netip.PrefixFrom(addr, n.subnet.Bits())
	if r != nil {
		h.Prefix, h.Gateway = netip.PrefixFrom(addr, r.LAN.Bits()), r.LANAddr
	}
	return h, idx, nil
}

// nextAddrLocked takes the next free index and address of the network's
// subnet (r nil) or of r's LAN, whose first address is the router's.
func (n *Network) nextAddrLocked(r *Router) (int, netip.Addr, error) {
	if r != nil {
		addr, err := nthAddr(r.LAN, r.nextIdx+2)
		if err != nil {
			return 0, netip.Addr{}, err
		}
		r.nextIdx++
		return r.nextIdx, addr, nil
	}
	idx := n.nextIdx + 1
	if l := len(n.prefix) + 1 + len(strconv.Itoa(idx)); l > maxIfNameLen {
		return 0, netip.Addr{}, fmt.Errorf("too many hosts for prefix %q (interface names would exceed %d chars)", n.prefix, maxIfNameLen)
	}
	addr, err := nthAddr(n.subnet, idx)
	if err != nil {
		return 0, netip.Addr{}, err
	}
	n.nextIdx = idx
	return idx, addr, nil
}

// nthAddr is the idx-th address of subnet (1 is the first after the
// network address); IPv4's broadcast address is never handed out.
func nthAddr(subnet netip.Prefix, idx int) (netip.Addr, error) {
	addr := subnet.Addr()
	for range idx {
		addr = addr.Next()
	}
	last := !addr.Next().IsValid() || !subnet.Contains(addr.Next())
	if !subnet.Contains(addr) || addr.Is4() && last {
		return netip.Addr{}, fmt.Errorf("subnet %s exhausted", subnet)
	}
	return addr, nil
}

func (n *Network) setupHost(ctx context.Context, h *Host, idx int) error {
	if err := n.createNS(ctx, h.NS); err != nil {
		return err
	}
	if _, err := runIP(ctx, "-n", h.NS, "link", "set", "lo", "up"); err != nil {
		return fmt.Errorf("set up %s: %w", h.NS, err)
	}
	return attach(ctx, h.NS, HostIface, n.switchNS, n.prefix+"b"+strconv.Itoa(idx), h.Prefix)
}

// attach connects namespace ns to the bridge in switchNS through a veth
// pair (iface in ns, port in switchNS) and gives iface the address addr.
// The veth is created inside ns and its peer is moved straight into the
// switch namespace, so no interface ever appears in the caller's
// namespace.
func attach(ctx context.Context, ns, iface, switchNS, port string, addr netip.Prefix) error {
	addrArgs := []string{"-n", ns, "addr", "add", addr.String(), "dev", iface}
	if addr.Addr().Is6() {
		addrArgs = append(addrArgs, "nodad")
	}
	steps := [][]string{
		{"-n", ns, "link", "add", iface, "type", "veth", "peer", "name", port, "netns", switchNS},
		{"-n", switchNS, "link", "set", port, "master", bridgeName, "up"},
		addrArgs,
		{"-n", ns, "link", "set", iface, "up"},
	}
	for _, args := range steps {
		if _, err := runIP(ctx, args...); err != nil {
			return fmt.Errorf("set up %s: %w", ns, err)
		}
	}
	return nil
}

// abandonHost deletes the namespace of a host whose setup failed and
// releases its name. If deletion fails too, Close retries it.
func (n *Network) abandonHost(h *Host) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	err := deleteNS(ctx, n.log, h.NS)
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.names, h.Name)
	if err == nil {
		n.namespaces = slices.DeleteFunc(n.namespaces, func(ns string) bool { return ns == h.NS })
	}
}

// Network returns the network the host belongs to.
func (h *Host) Network() *Network { return h.net }

// Command returns a command that runs name with args inside the host's
// namespace ("ip netns exec NS name args..."). ctx kills it like
// [exec.CommandContext].
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Run runs name with args inside the host's namespace and returns its
// trimmed combined output. The error includes the output.
func (h *Host) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := runCmd(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	if err != nil {
		return out, fmt.Errorf("netns: run in %s: %w", h.Name, err)
	}
	return out, nil
}

// Ping sends count ICMP echo requests from the host to dst, 0.2s apart,
// waiting at most one second for each reply. Like ping(8) it fails only if
// no reply at all arrives.
func (h *Host) Ping(ctx context.Context, dst netip.Addr, count int) error {
	if count < 1 {
		count = 1
	}
	_, err := h.Run(ctx, "ping", "-n", "-c", strconv.Itoa(count), "-W", "1", "-i", "0.2", dst.String())
	if err != nil {
		return fmt.Errorf("netns: ping %s -> %s: %w", h.Name, dst, err)
	}
	return nil
}
