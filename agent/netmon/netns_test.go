package netmon_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/netmon"
	"github.com/certmesh/certmesh/tstest/netns"
)

// waitFor is how long a change may take to be reported: far more than
// the debounce, so that a loaded machine does not fail the test.
const waitFor = 20 * time.Second

// startIn starts a monitor inside host's network namespace.
func startIn(t *testing.T, h *netns.Host, cfg netmon.Config) *netmon.Monitor {
	t.Helper()
	var m *netmon.Monitor
	if err := h.Do(func() (err error) {
		m, err = netmon.Start(t.Context(), cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func has(st netmon.State, link, prefix string) bool {
	return slices.Contains(st, netmon.Addr{Link: link, Prefix: netip.MustParsePrefix(prefix)})
}

// next waits for the next reported change.
func next(t *testing.T, m *netmon.Monitor, what string) netmon.State {
	t.Helper()
	select {
	case st, ok := <-m.Changes():
		if !ok {
			t.Fatalf("%s: the monitor stopped", what)
		}
		return st
	case <-time.After(waitFor):
		t.Fatalf("%s: no change reported in %s (addresses %v)", what, waitFor, m.State())
	}
	return nil
}

// until waits for a reported change that satisfies ok.
func until(t *testing.T, m *netmon.Monitor, what string, ok func(netmon.State) bool) netmon.State {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		if st := next(t, m, what); ok(st) {
			return st
		}
	}
	t.Fatalf("%s: not reported in %s (addresses %v)", what, waitFor, m.State())
	return nil
}

func run(t *testing.T, h *netns.Host, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if out, err := h.Run(ctx, "ip", args...); err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
}

// TestMonitorReportsAddressChanges drives a monitor in a network
// namespace with real address and link changes.
func TestMonitorReportsAddressChanges(t *testing.T) {
	n := netns.NewTest(t, netns.Options{})
	h, err := n.AddHost(t.Context(), "m")
	if err != nil {
		t.Fatal(err)
	}
	run(t, h, "link", "add", "tun9", "type", "veth", "peer", "name", "tun9p")
	run(t, h, "link", "set", "tun9", "up")
	m := startIn(t, h, netmon.Config{Debounce: 50 * time.Millisecond, Recheck: time.Hour,
		Ignore: func(link string) bool { return link == "tun9" }})
	eth0 := netip.PrefixFrom(h.Addr, n.Subnet().Bits()).String()
	if st := m.State(); !has(st, "eth0", eth0) {
		t.Fatalf("initial addresses %v lack eth0's %s", st, eth0)
	}

	// An ignored link's addresses are never reported: the next change
	// is eth0's new address, without them.
	run(t, h, "addr", "add", "100.64.0.9/32", "dev", "tun9")
	run(t, h, "addr", "add", "192.0.2.10/24", "dev", "eth0")
	st := until(t, m, "IPv4 address added", func(st netmon.State) bool { return has(st, "eth0", "192.0.2.10/24") })
	if has(st, "tun9", "100.64.0.9/32") {
		t.Fatalf("reported the ignored link's address: %v", st)
	}

	run(t, h, "-6", "addr", "add", "2001:db8::10/64", "dev", "eth0", "nodad")
	until(t, m, "IPv6 address added", func(st netmon.State) bool { return has(st, "eth0", "2001:db8::10/64") })

	run(t, h, "addr", "del", "192.0.2.10/24", "dev", "eth0")
	until(t, m, "IPv4 address removed", func(st netmon.State) bool { return !has(st, "eth0", "192.0.2.10/24") })

	// A link going down takes its addresses with it; up, they are back.
	run(t, h, "link", "set", "eth0", "down")
	until(t, m, "link down", func(st netmon.State) bool { return !has(st, "eth0", eth0) })
	run(t, h, "link", "set", "eth0", "up")
	until(t, m, "link up", func(st netmon.State) bool { return has(st, "eth0", eth0) })
}

// TestMonitorRecheckFindsMissedChanges: with every netlink event lost,
// the periodic re-read still finds a new address.
func TestMonitorRecheckFindsMissedChanges(t *testing.T) {
	n := netns.NewTest(t, netns.Options{})
	h, err := n.AddHost(t.Context(), "r")
	if err != nil {
		t.Fatal(err)
	}
	m := startIn(t, h, netmon.WithoutEvents(netmon.Config{Recheck: 100 * time.Millisecond}))
	run(t, h, "addr", "add", "192.0.2.20/24", "dev", "eth0")
	until(t, m, "address added", func(st netmon.State) bool { return has(st, "eth0", "192.0.2.20/24") })
}
