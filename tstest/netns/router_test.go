package netns_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

// whoServer answers every UDP datagram and TCP connection on addr inside h
// with the source address and port it saw, as a STUN server would.
func whoServer(t *testing.T, h *netns.Host, addr netip.AddrPort) {
	t.Helper()
	pc, err := h.ListenPacket("udp4", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(from.String()), from)
		}
	}()
	ln, err := h.Listen("tcp4", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(c.RemoteAddr().String()))
			c.Close()
		}
	}()
}

// udpSocket is a UDP socket inside h on port.
func udpSocket(t *testing.T, h *netns.Host, port int) net.PacketConn {
	t.Helper()
	pc, err := h.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

var errNoAnswer = errors.New("no answer")

// seenAs sends a datagram from pc to dst and returns the source address
// dst saw (three tries, a second each), or errNoAnswer.
func seenAs(pc net.PacketConn, dst netip.AddrPort) (netip.AddrPort, error) {
	buf := make([]byte, 100)
	for range 3 {
		if _, err := pc.WriteTo([]byte("who"), net.UDPAddrFromAddrPort(dst)); err != nil {
			return netip.AddrPort{}, err
		}
		_ = pc.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		if from.String() != dst.String() {
			return netip.AddrPort{}, fmt.Errorf("answer from %s, not %s", from, dst)
		}
		return netip.ParseAddrPort(string(buf[:n]))
	}
	return netip.AddrPort{}, errNoAnswer
}

func mustSeenAs(t *testing.T, pc net.PacketConn, dst netip.AddrPort) netip.AddrPort {
	t.Helper()
	got, err := seenAs(pc, dst)
	if err != nil {
		t.Fatalf("UDP to %s: %v", dst, err)
	}
	return got
}

// tcpSeenAs connects from h to dst and returns the source dst saw.
func tcpSeenAs(ctx context.Context, h *netns.Host, dst netip.AddrPort) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := h.DialContext(ctx, "tcp4", dst.String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.ParseAddrPort(strings.TrimSpace(string(b)))
}

// must returns a function that fails the test on an error, else returns v:
// must[*netns.Host](t)(n.AddHost(ctx, "a")).
func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestNATMapping: two LANs (the same private subnet) behind two routers.
// Behind the endpoint-independent NAT one socket is seen at the router's
// address and its own port by every destination; behind the symmetric NAT
// at a different port by each. Nothing from outside reaches the LANs
// unasked.
func TestNATMapping(t *testing.T) {
	netns.RequireCommands(t, "nft")
	n := netns.NewTest(t, netns.Options{})
	ctx := t.Context()
	host, router := must[*netns.Host](t), must[*netns.Router](t)
	s1 := host(n.AddHost(ctx, "s1"))
	s2 := host(n.AddHost(ctx, "s2"))
	eim := router(n.AddRouter(ctx, "eim", netns.RouterOptions{}))
	sym := router(n.AddRouter(ctx, "sym", netns.RouterOptions{Mapping: netns.Symmetric}))
	c1 := host(eim.AddHost(ctx, "c1"))
	c2 := host(sym.AddHost(ctx, "c2"))
	if c1.Addr != c2.Addr || c1.Gateway != eim.LANAddr || !eim.LAN.Contains(c1.Addr) {
		t.Fatalf("LAN hosts %s (gw %s), %s: want the same address on separate LANs %s", c1.Addr, c1.Gateway, c2.Addr, eim.LAN)
	}
	dsts := []netip.AddrPort{
		netip.AddrPortFrom(s1.Addr, 7001), netip.AddrPortFrom(s1.Addr, 7002), netip.AddrPortFrom(s2.Addr, 7001),
	}
	for _, d := range dsts {
		whoServer(t, n.Host(map[netip.Addr]string{s1.Addr: "s1", s2.Addr: "s2"}[d.Addr()]), d)
	}

	pc1 := udpSocket(t, c1, 40000)
	for _, d := range dsts {
		if got, want := mustSeenAs(t, pc1, d), netip.AddrPortFrom(eim.Addr, 40000); got != want {
			t.Errorf("endpoint-independent NAT: %s saw %s, want %s", d, got, want)
		}
	}

	pc2 := udpSocket(t, c2, 40000)
	ports := map[uint16]bool{}
	for _, d := range dsts {
		got := mustSeenAs(t, pc2, d)
		if got.Addr() != sym.Addr {
			t.Errorf("symmetric NAT: %s saw %s, want the router's address %s", d, got, sym.Addr)
		}
		ports[got.Port()] = true
		t.Logf("symmetric NAT: %s saw %s", d, got)
	}
	if len(ports) < 2 {
		t.Errorf("symmetric NAT: every destination saw port %v", ports)
	}

	// Unasked: from a port c1 never sent to, to the mapping c1 has; and
	// straight to the LAN address.
	pc := udpSocket(t, s1, 9999)
	for _, dst := range []netip.AddrPort{netip.AddrPortFrom(eim.Addr, 40000), netip.AddrPortFrom(c1.Addr, 40000)} {
		_, _ = pc.WriteTo([]byte("unasked"), net.UDPAddrFromAddrPort(dst))
	}
	_ = pc1.SetReadDeadline(time.Now().Add(time.Second))
	if _, from, err := pc1.ReadFrom(make([]byte, 100)); err == nil {
		t.Errorf("a datagram nobody behind the NAT asked for arrived from %s", from)
	}
}

// TestRouterBlocksUDP: behind a router that blocks UDP, datagrams get no
// answer while TCP to the same server passes (from the router's address).
func TestRouterBlocksUDP(t *testing.T) {
	netns.RequireCommands(t, "nft")
	n := netns.NewTest(t, netns.Options{})
	ctx := t.Context()
	host, router := must[*netns.Host](t), must[*netns.Router](t)
	s1 := host(n.AddHost(ctx, "s1"))
	r := router(n.AddRouter(ctx, "hotel", netns.RouterOptions{BlockUDP: true}))
	c := host(r.AddHost(ctx, "c"))
	dst := netip.AddrPortFrom(s1.Addr, 3478)
	whoServer(t, s1, dst)
	if got, err := seenAs(udpSocket(t, c, 40000), dst); !errors.Is(err, errNoAnswer) {
		t.Errorf("UDP through a router that blocks it: seen as %s, %v", got, err)
	}
	got, err := tcpSeenAs(ctx, c, dst)
	if err != nil {
		t.Fatalf("TCP through a router that blocks UDP: %v", err)
	}
	if got.Addr() != r.Addr {
		t.Errorf("TCP seen from %s, want the router's address %s", got, r.Addr)
	}
	// Positive control: the same host on the router's own side answers UDP.
	if _, err := seenAs(udpSocket(t, r.Host, 40001), dst); err != nil {
		t.Errorf("UDP from the router itself: %v", err)
	}
}

// TestRouterReaddress: when the router's public address changes (roaming,
// a new lease), the flow from the same LAN socket leaves from the new
// address.
func TestRouterReaddress(t *testing.T) {
	netns.RequireCommands(t, "nft")
	n := netns.NewTest(t, netns.Options{})
	ctx := t.Context()
	host, router := must[*netns.Host](t), must[*netns.Router](t)
	s1 := host(n.AddHost(ctx, "s1"))
	r := router(n.AddRouter(ctx, "r", netns.RouterOptions{}))
	c := host(r.AddHost(ctx, "c"))
	dst := netip.AddrPortFrom(s1.Addr, 3478)
	whoServer(t, s1, dst)
	pc := udpSocket(t, c, 40000)
	old := r.Addr
	if got := mustSeenAs(t, pc, dst); got.Addr() != old {
		t.Fatalf("seen from %s, want %s", got, old)
	}
	addr, err := r.Readdress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if addr == old || r.Addr != addr || !n.Subnet().Contains(addr) {
		t.Fatalf("readdressed from %s to %s (Addr %s)", old, addr, r.Addr)
	}
	if got := mustSeenAs(t, pc, dst); got.Addr() != addr {
		t.Errorf("after the router's address changed from %s to %s, seen from %s", old, addr, got)
	}
	// The old address is gone, the new one answers.
	if err := s1.Ping(ctx, addr, 1); err != nil {
		t.Error(err)
	}
	out, err := r.Run(ctx, "ip", "-4", "-o", "addr", "show", "dev", netns.HostIface)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, " "+old.String()+"/") || !strings.Contains(out, " "+addr.String()+"/") {
		t.Errorf("router's eth0 after readdressing:\n%s", out)
	}

	// A host behind the router moves on its LAN: it keeps its default
	// route, and a new socket gets through from the router's address.
	lanOld := c.Addr
	lanNew, err := c.Readdress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lanNew == lanOld || !r.LAN.Contains(lanNew) {
		t.Fatalf("LAN host readdressed from %s to %s, want another address of %s", lanOld, lanNew, r.LAN)
	}
	if got := mustSeenAs(t, udpSocket(t, c, 40001), dst); got.Addr() != addr {
		t.Errorf("after the LAN host moved to %s, seen from %s, want the router's %s", lanNew, got, addr)
	}
}

// rtt is the round trip of one UDP echo from pc to dst.
func rtt(t *testing.T, pc net.PacketConn, dst netip.AddrPort) time.Duration {
	t.Helper()
	start := time.Now()
	mustSeenAs(t, pc, dst)
	return time.Since(start)
}

// TestImpairment: netem on a host's egress adds at least the configured
// delay to every round trip through it, and drops about the configured
// share of packets.
func TestImpairment(t *testing.T) {
	netns.RequireNetem(t)
	n := netns.NewTest(t, netns.Options{})
	ctx := t.Context()
	host := must[*netns.Host](t)
	a := host(n.AddHost(ctx, "a"))
	b := host(n.AddHost(ctx, "b"))
	dst := netip.AddrPortFrom(b.Addr, 7)
	whoServer(t, b, dst)
	pc := udpSocket(t, a, 40000)
	t.Logf("round trip before: %v", rtt(t, pc, dst))

	const delay = 150 * time.Millisecond
	if err := b.Impair(ctx, netns.Impairment{Delay: delay}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if d := rtt(t, pc, dst); d < delay {
			t.Errorf("round trip %v with %v netem delay on the way back", d, delay)
		} else {
			t.Logf("round trip with %v delay: %v", delay, d)
		}
	}

	if err := b.Impair(ctx, netns.Impairment{Loss: 50}); err != nil {
		t.Fatal(err)
	}
	const sent = 200
	for range sent {
		if _, err := pc.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(dst)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // pace the burst: no socket buffer drops
	}
	got := 0
	buf := make([]byte, 100)
	for {
		_ = pc.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := pc.ReadFrom(buf); err != nil {
			break
		}
		got++
	}
	// 50% loss: 100 expected; outside 20..180 has odds below 1e-18.
	if got <= 20 || got >= 180 {
		t.Errorf("%d of %d echoes came back through 50%% loss", got, sent)
	}
	t.Logf("%d of %d echoes came back through 50%% loss", got, sent)

	if err := b.ClearImpairment(ctx); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []netns.Impairment{{Loss: 101}, {Delay: -time.Second}, {Jitter: time.Millisecond}} {
		if err := b.Impair(ctx, bad); err == nil {
			t.Errorf("impairment %+v accepted", bad)
		}
	}
}
