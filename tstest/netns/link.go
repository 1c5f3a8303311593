package netns

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
)

// Readdress moves the host's eth0 to the next free address of its subnet
// (the network's, or its router's LAN) and returns it: a laptop that
// roams, or a router whose provider hands it a new public address. The
// new address is added before the old one goes (promote_secondaries), so
// routes through eth0 stay. On a router the kernel drops the NAT mappings
// of the old address, so flows from the LAN continue from the new one.
// h.Addr and h.Prefix change: do not read them concurrently.
func (h *Host) Readdress(ctx context.Context) (netip.Addr, error) {
	n := h.net
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return netip.Addr{}, errClosed
	}
	_, addr, err := n.nextAddrLocked(h.router)
	old := h.Prefix
	n.mu.Unlock()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("netns: readdress %s: %w", h.Name, err)
	}
	next := netip.PrefixFrom(addr, old.Bits())
	if addr.Is4() {
		if err := h.Do(func() error { return writeSysctl("net/ipv4/conf/"+HostIface+"/promote_secondaries", "1") }); err != nil {
			return netip.Addr{}, fmt.Errorf("netns: readdress %s: %w", h.Name, err)
		}
	}
	add := []string{"-n", h.NS, "addr", "add", next.String(), "dev", HostIface}
	if addr.Is6() {
		add = append(add, "nodad")
	}
	for _, args := range [][]string{add, {"-n", h.NS, "addr", "del", old.String(), "dev", HostIface}} {
		if _, err := runIP(ctx, args...); err != nil {
			return netip.Addr{}, fmt.Errorf("netns: readdress %s: %w", h.Name, err)
		}
	}
	// The kernel drops the old address's masqueraded flows itself, but
	// later, from a work queue: until then a LAN socket's next datagram
	// may still leave from the gone address (TestRouterReaddress was red
	// that way on a loaded machine). Flush now, as a router that takes a
	// new lease loses its NAT state.
	if err := h.Do(func() error { return netlink.ConntrackTableFlush(netlink.ConntrackTable) }); err != nil {
		return netip.Addr{}, fmt.Errorf("netns: readdress %s: flushing conntrack: %w", h.Name, err)
	}
	n.mu.Lock()
	h.Addr, h.Prefix = addr, next
	n.mu.Unlock()
	n.log.Debug("netns: host readdressed", "host", h.Name, "old", old.Addr(), "new", addr)
	return addr, nil
}

// Impairment is what netem does to the packets a host sends.
type Impairment struct {
	// Delay holds every packet back this long, give or take Jitter.
	Delay, Jitter time.Duration
	// Loss is the share of packets dropped, in percent (0-100).
	Loss float64
}

// Impair makes the host's eth0 delay and drop what it sends (tc qdisc
// netem on its egress; replaces an earlier impairment). To impair a link
// both ways, impair both of its ends. It needs tc (iproute2) in PATH and
// the kernel's netem qdisc ([NetemAvailable], [RequireNetem]).
func (h *Host) Impair(ctx context.Context, im Impairment) error {
	switch {
	case im.Delay < 0 || im.Jitter < 0:
		return fmt.Errorf("netns: impair %s: negative delay %v or jitter %v", h.Name, im.Delay, im.Jitter)
	case im.Jitter > 0 && im.Delay == 0:
		return fmt.Errorf("netns: impair %s: jitter %v needs a delay", h.Name, im.Jitter)
	case !(im.Loss >= 0 && im.Loss <= 100):
		return fmt.Errorf("netns: impair %s: loss %v%%: want 0 to 100", h.Name, im.Loss)
	}
	args := []string{"qdisc", "replace", "dev", HostIface, "root", "netem"}
	if im.Delay > 0 {
		args = append(args, "delay", usec(im.Delay))
		if im.Jitter > 0 {
			args = append(args, usec(im.Jitter))
		}
	}
	if im.Loss > 0 {
		args = append(args, "loss", strconv.FormatFloat(im.Loss, 'f', -1, 64)+"%")
	}
	if _, err := h.Run(ctx, "tc", args...); err != nil {
		return fmt.Errorf("netns: impair %s: %w", h.Name, err)
	}
	return nil
}

// ClearImpairment removes what Impair set.
func (h *Host) ClearImpairment(ctx context.Context) error {
	if _, err := h.Run(ctx, "tc", "qdisc", "del", "dev", HostIface, "root"); err != nil {
		return fmt.Errorf("netns: clear impairment of %s: %w", h.Name, err)
	}
	return nil
}

func usec(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) + "us" }

// NetemAvailable reports whether [Host.Impair] can work here: tc in PATH
// and a kernel with the netem qdisc (CONFIG_NET_SCH_NETEM). The (cached)
// error says what is missing.
func NetemAvailable() error { return netemProbe() }

var netemProbe = sync.OnceValue(probeNetem)

func probeNetem() error {
	if err := Available(); err != nil {
		return err
	}
	if _, err := exec.LookPath("tc"); err != nil {
		return fmt.Errorf("tc (iproute2) not found: %w", err)
	}
	ctx, ns, remove, err := probeNS("cmnetem")
	if err != nil {
		return err
	}
	defer func() { _ = remove() }()
	if _, err := runIP(ctx, "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"); err != nil {
		return err
	}
	if _, err := runCmd(ctx, "ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "v0", "root", "netem", "delay", "1ms"); err != nil {
		return fmt.Errorf("the kernel has no netem qdisc (CONFIG_NET_SCH_NETEM, module sch_netem): %w", err)
	}
	return nil
}
