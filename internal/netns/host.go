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

	net *Network
}

// AddHost creates namespace "<prefix>-<name>" with loopback up and an eth0
// interface that has the next free subnet address and is connected to the
// bridge. ctx bounds the setup commands only. On error the namespace is
// removed again.
func (n *Network) AddHost(ctx context.Context, name string) (*Host, error) {
	if !hostNameRE.MatchString(name) || len(name) > maxHostNameLen || name == switchSuffix {
		return nil, fmt.Errorf("netns: add host %q: invalid name (want letters, digits, '_', '.', '-', at most %d chars, not %q)", name, maxHostNameLen, switchSuffix)
	}
	h, idx, err := n.reserveHost(name)
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

// reserveHost claims the name, an index and an address.
func (n *Network) reserveHost(name string) (*Host, int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, 0, errClosed
	}
	if n.names[name] {
		return nil, 0, fmt.Errorf("host already exists")
	}
	idx := n.nextIdx + 1
	if l := len(n.prefix) + 1 + len(strconv.Itoa(idx)); l > maxIfNameLen {
		return nil, 0, fmt.Errorf("too many hosts for prefix %q (interface names would exceed %d chars)", n.prefix, maxIfNameLen)
	}
	addr := n.subnet.Addr()
	for range idx {
		addr = addr.Next()
	}
	last := !addr.Next().IsValid() || !n.subnet.Contains(addr.Next())
	if !n.subnet.Contains(addr) || addr.Is4() && last {
		return nil, 0, fmt.Errorf("subnet %s exhausted", n.subnet)
	}
	n.nextIdx = idx
	n.names[name] = true
	return &Host{
		Name:   name,
		NS:     n.prefix + "-" + name,
		Addr:   addr,
		Prefix: netip.PrefixFrom(addr, n.subnet.Bits()),
		net:    n,
	}, idx, nil
}

func (n *Network) setupHost(ctx context.Context, h *Host, idx int) error {
	if err := n.createNS(ctx, h.NS); err != nil {
		return err
	}
	// The veth is created inside the host namespace and its peer is moved
	// straight into the switch namespace, so no interface ever appears in
	// the caller's namespace.
	bport := n.prefix + "b" + strconv.Itoa(idx)
	addrArgs := []string{"-n", h.NS, "addr", "add", h.Prefix.String(), "dev", HostIface}
	if h.Addr.Is6() {
		addrArgs = append(addrArgs, "nodad")
	}
	steps := [][]string{
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "link", "add", HostIface, "type", "veth", "peer", "name", bport, "netns", n.switchNS},
		{"-n", n.switchNS, "link", "set", bport, "master", bridgeName, "up"},
		addrArgs,
		{"-n", h.NS, "link", "set", HostIface, "up"},
	}
	for _, args := range steps {
		if _, err := runIP(ctx, args...); err != nil {
			return fmt.Errorf("set up %s: %w", h.NS, err)
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
