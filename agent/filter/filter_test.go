package filter

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/certmesh/certmesh/certs"
)

// wgOffset is the offset wireguard-go writes packets at
// (device.MessageTransportOffsetContent).
const wgOffset = 16

var (
	self4  = netip.MustParseAddr("100.64.0.1")
	alice4 = netip.MustParseAddr("100.64.0.2")
	bob4   = netip.MustParseAddr("100.64.0.3")
	ghost4 = netip.MustParseAddr("100.64.0.99") // no peer holds it
	self6  = netip.MustParseAddr("fd7a:115c:a1e0::1")
	alice6 = netip.MustParseAddr("fd7a:115c:a1e0::2")
	bob6   = netip.MustParseAddr("fd7a:115c:a1e0::3")

	alice = &certs.Identity{DeviceID: "alice-laptop", Addresses: []netip.Addr{alice4, alice6}, Tags: []certs.Tag{"laptop"}}
	bob   = &certs.Identity{DeviceID: "bob-server", Addresses: []netip.Addr{bob4, bob6}, Tags: []certs.Tag{"db"}}
)

// peerMap is a Peers over a fixed set of identities.
type peerMap map[netip.Addr]*certs.Identity

func (m peerMap) Lookup(a netip.Addr) (*certs.Identity, bool) { id, ok := m[a]; return id, ok }

func peersOf(ids ...*certs.Identity) peerMap {
	m := peerMap{}
	for _, id := range ids {
		for _, a := range id.Addresses {
			m[a] = id
		}
	}
	return m
}

// rule is one accept rule of a toy policy.
type rule struct {
	device certs.DeviceID // "" = any
	proto  uint8
	port   uint16 // 0 = any
}

// policy compiles rules into a Decider that also counts its calls.
func policy(calls *atomic.Int64, rules ...rule) Decider {
	return func(src *certs.Identity, proto uint8, port uint16) (bool, int) {
		if calls != nil {
			calls.Add(1)
		}
		for i, r := range rules {
			if (r.device == "" || r.device == src.DeviceID) && r.proto == proto && (r.port == 0 || r.port == port) {
				return true, i
			}
		}
		return false, -1
	}
}

func denyAll(*certs.Identity, uint8, uint16) (bool, int) { return false, -1 }

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	t     *testing.T
	tun   *fakeTUN
	dev   *Device
	clock *fakeClock
	drops []Drop
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, tun: newFakeTUN(), clock: &fakeClock{t: time.Unix(1_700_000_000, 0)}}
	if cfg.Now == nil {
		cfg.Now = h.clock.Now
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = -1
	}
	if cfg.OnDrop == nil {
		cfg.OnDrop = func(d Drop) { h.drops = append(h.drops, d) }
	}
	h.dev = Wrap(h.tun, cfg)
	t.Cleanup(func() { h.dev.Close() })
	return h
}

// withOffset copies pkt into a buffer at wgOffset, as wireguard-go lays it out.
func withOffset(pkt []byte) []byte {
	b := make([]byte, wgOffset+len(pkt))
	copy(b[wgOffset:], pkt)
	return b
}

// recv delivers pkt as wireguard-go does for a decrypted inbound packet and
// reports whether it reached the operating system.
func (h *harness) recv(pkt []byte) bool {
	h.t.Helper()
	n, err := h.dev.Write([][]byte{withOffset(pkt)}, wgOffset)
	if err != nil || n != 1 {
		h.t.Fatalf("Write = %d, %v", n, err)
	}
	w := h.tun.takeWritten()
	switch len(w) {
	case 0:
		return false
	case 1:
		if string(w[0]) != string(pkt) {
			h.t.Fatalf("written packet differs from the one sent")
		}
		return true
	default:
		h.t.Fatalf("%d packets written for one", len(w))
		return false
	}
}

// send has the operating system send pkt through the device (wireguard-go's
// Read) and checks that it passes unchanged.
func (h *harness) send(pkt []byte) {
	h.t.Helper()
	h.tun.mu.Lock()
	h.tun.queue = append(h.tun.queue, pkt)
	h.tun.mu.Unlock()
	bufs := [][]byte{make([]byte, 2048)}
	sizes := []int{0}
	n, err := h.dev.Read(bufs, sizes, wgOffset)
	if err != nil || n != 1 || string(bufs[0][wgOffset:wgOffset+sizes[0]]) != string(pkt) {
		h.t.Fatalf("Read = %d, %v, or packet changed", n, err)
	}
}

func (h *harness) lastDrop() DropReason {
	if len(h.drops) == 0 {
		return ""
	}
	return h.drops[len(h.drops)-1].Reason
}

func TestInboundNewFlows(t *testing.T) {
	rules := []rule{
		{device: "alice-laptop", proto: ProtoTCP, port: 22},
		{device: "", proto: ProtoUDP, port: 53},
		{device: "", proto: ProtoICMP},
		{device: "", proto: ProtoICMPv6},
		{device: "bob-server", proto: ProtoTCP, port: 0},
	}
	truncatedTCP := tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil)
	truncatedTCP = truncatedTCP[:header.IPv4MinimumSize+10]
	header.IPv4(truncatedTCP).SetTotalLength(uint16(len(truncatedTCP)))
	badIHL := tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil)
	badIHL[0] = 0x44 // IHL 16 bytes
	longTotal := tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil)
	header.IPv4(longTotal).SetTotalLength(uint16(len(longTotal) + 1))
	longV6 := tcpSeg(alice6, self6, 40000, 22, header.TCPFlagSyn, nil)
	header.IPv6(longV6).SetPayloadLength(1000)
	badUDPLen := udpDgram(alice4, self4, 5000, 53, []byte("query"))
	header.UDP(badUDPLen[header.IPv4MinimumSize:]).SetLength(100)
	badDataOff := tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil)
	badDataOff[header.IPv4MinimumSize+12] = 0xf0 // 60-byte TCP header in 20 bytes

	tests := []struct {
		name   string
		pkt    []byte
		accept bool
		reason DropReason
		rule   int
	}{
		{"tcp syn allowed", tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil), true, "", 0},
		{"tcp syn other port denied", tcpSeg(alice4, self4, 40000, 23, header.TCPFlagSyn, nil), false, DropDenied, -1},
		{"tcp syn from another peer denied", tcpSeg(bob4, self4, 40000, 22, header.TCPFlagSyn, nil), true, "", 4},
		{"tcp syn ipv6 allowed", tcpSeg(alice6, self6, 40000, 22, header.TCPFlagSyn, nil), true, "", 0},
		{"tcp syn ipv6 denied", tcpSeg(alice6, self6, 40000, 80, header.TCPFlagSyn, nil), false, DropDenied, -1},
		{"udp allowed", udpDgram(alice4, self4, 5000, 53, []byte("query")), true, "", 1},
		{"udp ipv6 allowed", udpDgram(alice6, self6, 5000, 53, []byte("query")), true, "", 1},
		{"udp denied", udpDgram(alice4, self4, 5000, 123, []byte("ntp")), false, DropDenied, -1},
		{"icmp echo allowed", echo(alice4, self4, true, 9, 1), true, "", 2},
		{"icmpv6 echo allowed", echo(alice6, self6, true, 9, 1), true, "", 3},
		{"unknown source", tcpSeg(ghost4, self4, 40000, 22, header.TCPFlagSyn, nil), false, DropUnknownSource, -1},
		{"empty", []byte{}, false, DropMalformed, -1},
		{"version 5", append([]byte{0x50}, make([]byte, 39)...), false, DropMalformed, -1},
		{"short ipv4 header", tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil)[:19], false, DropMalformed, -1},
		{"truncated tcp", truncatedTCP, false, DropMalformed, -1},
		{"ihl below 20", badIHL, false, DropMalformed, -1},
		{"total length beyond packet", longTotal, false, DropMalformed, -1},
		{"ipv6 payload length beyond packet", longV6, false, DropMalformed, -1},
		{"udp length beyond packet", badUDPLen, false, DropMalformed, -1},
		{"tcp data offset beyond packet", badDataOff, false, DropMalformed, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{Decider: policy(nil, rules...), Peers: peersOf(alice, bob)})
			if got := h.recv(tc.pkt); got != tc.accept {
				t.Fatalf("accepted = %v, want %v (drop %q)", got, tc.accept, h.lastDrop())
			}
			c := h.dev.Counters()
			if tc.accept {
				want := []RuleCount{{Rule: tc.rule, Accepted: 1}}
				if !slices.Equal(c.AcceptedByRule, want) {
					t.Fatalf("AcceptedByRule = %v, want %v", c.AcceptedByRule, want)
				}
				if c.DroppedTotal != 0 {
					t.Fatalf("DroppedTotal = %d", c.DroppedTotal)
				}
				return
			}
			if h.lastDrop() != tc.reason || c.Dropped[tc.reason] != 1 || c.DroppedTotal != 1 {
				t.Fatalf("drop %q, counters %v; want %q", h.lastDrop(), c.Dropped, tc.reason)
			}
			if len(c.AcceptedByRule) != 0 {
				t.Fatalf("AcceptedByRule = %v", c.AcceptedByRule)
			}
		})
	}
}

func TestNoPolicyDropsEverythingInbound(t *testing.T) {
	h := newHarness(t, Config{Peers: peersOf(alice)}) // no Decider
	// A flow this node opens: its reply is dropped too while no policy is held.
	h.send(tcpSeg(self4, alice4, 50000, 443, header.TCPFlagSyn, nil))
	for _, pkt := range [][]byte{
		tcpSeg(alice4, self4, 443, 50000, header.TCPFlagSyn|header.TCPFlagAck, nil),
		tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil),
		echo(alice6, self6, true, 1, 1),
		{0xff}, // even garbage counts as no-policy: nothing is parsed
	} {
		if h.recv(pkt) {
			t.Fatalf("accepted %x without a policy", pkt)
		}
	}
	c := h.dev.Counters()
	if c.Dropped[DropNoPolicy] != 4 || c.DroppedTotal != 4 {
		t.Fatalf("Dropped = %v", c.Dropped)
	}
	if c.Outbound != 1 {
		t.Fatalf("Outbound = %d", c.Outbound)
	}
	// Once a policy arrives, the reply of the flow opened meanwhile flows.
	h.dev.SetDecider(denyAll)
	if !h.recv(tcpSeg(alice4, self4, 443, 50000, header.TCPFlagSyn|header.TCPFlagAck, nil)) {
		t.Fatal("reply dropped after a policy was installed")
	}
}

func TestRepliesToOutboundFlows(t *testing.T) {
	tests := []struct {
		name     string
		out      []byte // sent by this node
		reply    []byte // the peer's answer: accepted without a rule
		stranger []byte // a packet from the same peer not on the flow: denied
	}{
		{
			"tcp",
			tcpSeg(self4, alice4, 50000, 443, header.TCPFlagSyn, nil),
			tcpSeg(alice4, self4, 443, 50000, header.TCPFlagSyn|header.TCPFlagAck, nil),
			tcpSeg(alice4, self4, 443, 50001, header.TCPFlagSyn|header.TCPFlagAck, nil),
		},
		{
			"tcp ipv6",
			tcpSeg(self6, alice6, 50000, 443, header.TCPFlagSyn, nil),
			tcpSeg(alice6, self6, 443, 50000, header.TCPFlagSyn|header.TCPFlagAck, nil),
			tcpSeg(alice6, self6, 444, 50000, header.TCPFlagSyn|header.TCPFlagAck, nil),
		},
		{
			"udp",
			udpDgram(self4, alice4, 40000, 53, []byte("q")),
			udpDgram(alice4, self4, 53, 40000, []byte("a")),
			udpDgram(alice4, self4, 53, 40001, []byte("a")),
		},
		{
			"udp ipv6",
			udpDgram(self6, alice6, 40000, 53, []byte("q")),
			udpDgram(alice6, self6, 53, 40000, []byte("a")),
			udpDgram(bob6, self6, 53, 40000, []byte("a")),
		},
		{
			"icmp echo",
			echo(self4, alice4, true, 77, 1),
			echo(alice4, self4, false, 77, 1),
			echo(alice4, self4, false, 78, 1),
		},
		{
			"icmpv6 echo",
			echo(self6, alice6, true, 77, 1),
			echo(alice6, self6, false, 77, 1),
			echo(alice6, self6, false, 78, 1),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			h := newHarness(t, Config{Decider: policy(&calls), Peers: peersOf(alice, bob)}) // no rules: deny all
			h.send(tc.out)
			if !h.recv(tc.reply) {
				t.Fatalf("reply dropped (%q)", h.lastDrop())
			}
			if !h.recv(tc.reply) {
				t.Fatalf("second reply dropped (%q)", h.lastDrop())
			}
			if h.recv(tc.stranger) {
				t.Fatal("packet outside the flow accepted")
			}
			if h.lastDrop() != DropDenied {
				t.Fatalf("stranger dropped as %q", h.lastDrop())
			}
			c := h.dev.Counters()
			if c.AcceptedEstablished != 2 || len(c.AcceptedByRule) != 0 {
				t.Fatalf("counters: %+v", c)
			}
			if calls.Load() != 1 {
				t.Fatalf("decider called %d times, want 1 (the stranger)", calls.Load())
			}
		})
	}
}

func TestInboundFlowIsStatefulBothWays(t *testing.T) {
	var calls atomic.Int64
	h := newHarness(t, Config{Decider: policy(&calls, rule{device: "alice-laptop", proto: ProtoTCP, port: 22}), Peers: peersOf(alice)})
	if !h.recv(tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil)) {
		t.Fatal("SYN dropped")
	}
	h.send(tcpSeg(self4, alice4, 22, 40000, header.TCPFlagSyn|header.TCPFlagAck, nil))
	for range 10 {
		if !h.recv(tcpSeg(alice4, self4, 40000, 22, header.TCPFlagAck, []byte("data"))) {
			t.Fatal("established packet dropped")
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("decider called %d times, want 1", calls.Load())
	}
	c := h.dev.Counters()
	if !slices.Equal(c.AcceptedByRule, []RuleCount{{0, 1}}) || c.AcceptedEstablished != 10 || c.Flows.Active != 1 {
		t.Fatalf("counters: %+v", c)
	}
}

func TestTCPPortReuseByPeerIsANewFlow(t *testing.T) {
	h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice)})
	h.send(tcpSeg(self4, alice4, 50000, 443, header.TCPFlagSyn, nil))
	if !h.recv(tcpSeg(alice4, self4, 443, 50000, header.TCPFlagSyn|header.TCPFlagAck, nil)) {
		t.Fatal("SYN-ACK dropped")
	}
	h.send(tcpSeg(self4, alice4, 50000, 443, header.TCPFlagFin|header.TCPFlagAck, nil))
	// The peer now opens a connection from 443 to this node's port 50000:
	// not a reply to anything, so the policy decides (and refuses).
	if h.recv(tcpSeg(alice4, self4, 443, 50000, header.TCPFlagSyn, nil)) {
		t.Fatal("peer SYN rode on a closed flow this node opened")
	}
	if h.lastDrop() != DropDenied {
		t.Fatalf("drop = %q", h.lastDrop())
	}
}

func TestSimultaneousOpenIsAccepted(t *testing.T) {
	h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice)})
	h.send(tcpSeg(self4, alice4, 50000, 50001, header.TCPFlagSyn, nil))
	if !h.recv(tcpSeg(alice4, self4, 50001, 50000, header.TCPFlagSyn, nil)) {
		t.Fatal("simultaneous-open SYN dropped")
	}
}

func TestEchoRequestReusingOurIdentifierIsDecided(t *testing.T) {
	h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice)})
	h.send(echo(self4, alice4, true, 5, 1))
	if h.recv(echo(alice4, self4, true, 5, 1)) {
		t.Fatal("peer echo request rode on this node's echo flow")
	}
	if !h.recv(echo(alice4, self4, false, 5, 1)) {
		t.Fatal("echo reply dropped")
	}
}

func TestConntrackTimeouts(t *testing.T) {
	to := DefaultTimeouts
	tests := []struct {
		name  string
		out   []byte
		reply []byte
		idle  time.Duration
	}{
		{"udp", udpDgram(self4, alice4, 40000, 53, nil), udpDgram(alice4, self4, 53, 40000, nil), to.UDP},
		{"icmp", echo(self4, alice4, true, 3, 1), echo(alice4, self4, false, 3, 1), to.ICMP},
		{"icmpv6", echo(self6, alice6, true, 3, 1), echo(alice6, self6, false, 3, 1), to.ICMP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice)})
			h.send(tc.out)
			h.clock.Advance(tc.idle - time.Second)
			h.send(tc.out) // refreshes the timer
			h.clock.Advance(tc.idle - time.Second)
			if !h.recv(tc.reply) {
				t.Fatal("reply dropped before the idle timeout")
			}
			h.clock.Advance(tc.idle)
			if h.recv(tc.reply) {
				t.Fatal("reply accepted after the idle timeout")
			}
			if c := h.dev.Counters(); c.Flows.Expired != 1 || c.Flows.Active != 0 {
				t.Fatalf("flows: %+v", c.Flows)
			}
		})
	}

	t.Run("tcp syn unanswered", func(t *testing.T) {
		h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice)})
		h.send(tcpSeg(self4, alice4, 50000, 443, header.TCPFlagSyn, nil))
		h.clock.Advance(to.TCPNew - time.Second)
		if h.dev.Sweep() != 0 {
			t.Fatal("SYN entry expired early")
		}
		h.clock.Advance(2 * time.Second)
		if h.recv(tcpSeg(alice4, self4, 443, 50000, header.TCPFlagSyn|header.TCPFlagAck, nil)) {
			t.Fatal("SYN-ACK accepted after TCPNew")
		}
	})

	t.Run("tcp states", func(t *testing.T) {
		h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice)})
		syn := tcpSeg(self4, alice4, 50000, 443, header.TCPFlagSyn, nil)
		synack := tcpSeg(alice4, self4, 443, 50000, header.TCPFlagSyn|header.TCPFlagAck, nil)
		ack := tcpSeg(alice4, self4, 443, 50000, header.TCPFlagAck, nil)
		fin := tcpSeg(alice4, self4, 443, 50000, header.TCPFlagFin|header.TCPFlagAck, nil)
		h.send(syn)
		h.recv(synack)
		// Established: survives long idle periods.
		h.clock.Advance(to.TCPEstablished - time.Minute)
		if !h.recv(ack) {
			t.Fatal("established flow expired early")
		}
		// FIN: the shorter closing timeout applies.
		if !h.recv(fin) {
			t.Fatal("FIN dropped")
		}
		h.clock.Advance(to.TCPClosing + time.Second)
		if h.recv(ack) {
			t.Fatal("closing flow outlived TCPClosing")
		}
	})

	t.Run("custom and sweep", func(t *testing.T) {
		h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice), Timeouts: Timeouts{UDP: 5 * time.Second}})
		for p := range uint16(10) {
			h.send(udpDgram(self4, alice4, 40000+p, 53, nil))
		}
		if c := h.dev.Counters(); c.Flows.Active != 10 {
			t.Fatalf("Active = %d", c.Flows.Active)
		}
		h.clock.Advance(4 * time.Second)
		if n := h.dev.Sweep(); n != 0 {
			t.Fatalf("Sweep removed %d live flows", n)
		}
		h.clock.Advance(2 * time.Second)
		if n := h.dev.Sweep(); n != 10 {
			t.Fatalf("Sweep removed %d, want 10", n)
		}
		if c := h.dev.Counters(); c.Flows.Active != 0 || c.Flows.Expired != 10 {
			t.Fatalf("flows: %+v", c.Flows)
		}
	})
}

func TestTableIsBounded(t *testing.T) {
	const max = 8
	h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice), MaxFlows: max})
	out := func(p uint16) []byte { return udpDgram(self4, alice4, 40000+p, 53, nil) }
	reply := func(p uint16) []byte { return udpDgram(alice4, self4, 53, 40000+p, nil) }
	for p := range uint16(max) {
		h.send(out(p))
	}
	h.send(out(0)) // flow 0 is now the most recently used; flow 1 the least
	for p := uint16(max); p < 3*max; p++ {
		h.send(out(p))
		if c := h.dev.Counters(); c.Flows.Active > max {
			t.Fatalf("table holds %d flows, bound %d", c.Flows.Active, max)
		}
	}
	c := h.dev.Counters()
	if c.Flows.Active != max || c.Flows.Max != max || c.Flows.Evicted != 2*max {
		t.Fatalf("flows: %+v", c.Flows)
	}
	if h.recv(reply(1)) {
		t.Fatal("evicted flow still accepted")
	}
	for p := uint16(2 * max); p < 3*max; p++ {
		if !h.recv(reply(p)) {
			t.Fatalf("recent flow %d evicted", p)
		}
	}
	// Expired entries make room before live ones are evicted.
	h.clock.Advance(DefaultTimeouts.UDP + time.Second)
	evicted := h.dev.Counters().Flows.Evicted
	h.send(out(1000))
	if c := h.dev.Counters(); c.Flows.Evicted != evicted || c.Flows.Active != 1 {
		t.Fatalf("flows after expiry: %+v", c.Flows)
	}
}

func TestTableBoundIsExactAcrossShards(t *testing.T) {
	h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice), MaxFlows: 100_000})
	if got := len(h.dev.ct.shards); got != 64 {
		t.Fatalf("%d shards", got)
	}
	if m := h.dev.Counters().Flows.Max; m > 100_000 || m < 99_000 {
		t.Fatalf("Max = %d", m)
	}
	for i := range 200_000 {
		p := &packet{version: 4, proto: ProtoUDP, src: self4, dst: alice4, sport: uint16(i), dport: uint16(i >> 16)}
		k := outboundKey(p)
		h.dev.ct.outbound(&k, p, 1)
	}
	c := h.dev.Counters()
	if c.Flows.Active > c.Flows.Max {
		t.Fatalf("Active %d > Max %d", c.Flows.Active, c.Flows.Max)
	}
	if c.Flows.Active < c.Flows.Max*9/10 {
		t.Fatalf("shards unevenly filled: %d of %d", c.Flows.Active, c.Flows.Max)
	}
}

func TestRevalidate(t *testing.T) {
	var calls atomic.Int64
	allow := policy(&calls,
		rule{device: "alice-laptop", proto: ProtoTCP, port: 22},
		rule{device: "alice-laptop", proto: ProtoUDP, port: 514},
		rule{device: "alice-laptop", proto: ProtoTCP, port: 5432},
	)
	h := newHarness(t, Config{Decider: allow, Peers: peersOf(alice)})
	sshIn := tcpSeg(alice4, self4, 40000, 22, header.TCPFlagAck, []byte("ssh"))
	syslogIn := udpDgram(alice4, self4, 5000, 514, []byte("log"))
	pgIn := tcpSeg(alice4, self4, 40001, 5432, header.TCPFlagAck, []byte("sql"))
	webReply := tcpSeg(alice4, self4, 443, 50000, header.TCPFlagAck, []byte("html"))

	if !h.recv(tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil)) || !h.recv(syslogIn) || !h.recv(tcpSeg(alice4, self4, 40001, 5432, header.TCPFlagSyn, nil)) {
		t.Fatal("flows not opened")
	}
	h.send(tcpSeg(self4, alice4, 50000, 443, header.TCPFlagSyn, nil)) // this node's flow
	if !h.recv(webReply) {
		t.Fatal("reply dropped")
	}

	// New policy: only postgres stays.
	h.dev.SetDecider(policy(&calls, rule{device: "alice-laptop", proto: ProtoTCP, port: 5432}))
	if n := h.dev.Revalidate(); n != 2 {
		t.Fatalf("Revalidate dropped %d flows, want 2", n)
	}
	if h.recv(sshIn) || h.lastDrop() != DropDenied {
		t.Fatalf("revoked ssh flow still accepted (%q)", h.lastDrop())
	}
	if h.recv(syslogIn) {
		t.Fatal("revoked syslog flow still accepted")
	}
	if !h.recv(pgIn) {
		t.Fatal("still-allowed flow dropped")
	}
	if !h.recv(webReply) {
		t.Fatal("flow this node opened dropped by a policy change")
	}
	// This node answering on the revoked flows does not reopen them.
	h.send(tcpSeg(self4, alice4, 22, 40000, header.TCPFlagAck, []byte("ssh")))
	h.send(udpDgram(self4, alice4, 514, 5000, []byte("ack")))
	if h.recv(sshIn) || h.recv(syslogIn) {
		t.Fatal("revoked flow reopened by this node's answer")
	}
	if c := h.dev.Counters(); c.Flows.Revoked != 2 {
		t.Fatalf("Revoked = %d", c.Flows.Revoked)
	}
	// A second Revalidate has nothing left to do.
	if n := h.dev.Revalidate(); n != 0 {
		t.Fatalf("second Revalidate dropped %d", n)
	}
	// Policy widened again: the peer's next packet is decided afresh.
	h.dev.SetDecider(allow)
	if !h.recv(sshIn) {
		t.Fatal("flow allowed again still dropped")
	}
}

func TestPolicySwapIsLazyWithoutRevalidate(t *testing.T) {
	var calls atomic.Int64
	h := newHarness(t, Config{Decider: policy(&calls, rule{proto: ProtoTCP, port: 22}), Peers: peersOf(alice)})
	in := tcpSeg(alice4, self4, 40000, 22, header.TCPFlagAck, nil)
	if !h.recv(tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil)) {
		t.Fatal("SYN dropped")
	}
	// A new version that still allows the flow: it keeps flowing, decided
	// once more under the new version.
	h.dev.SetDecider(policy(&calls, rule{proto: ProtoUDP, port: 53}, rule{proto: ProtoTCP, port: 22}))
	for range 5 {
		if !h.recv(in) {
			t.Fatal("allowed flow dropped across a policy swap")
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("decider called %d times, want 2", calls.Load())
	}
	if c := h.dev.Counters(); !slices.Equal(c.AcceptedByRule, []RuleCount{{0, 1}, {1, 1}}) {
		t.Fatalf("AcceptedByRule = %v", c.AcceptedByRule)
	}
	// A version that refuses it: dropped at its next packet.
	h.dev.SetDecider(denyAll)
	if h.recv(in) {
		t.Fatal("refused flow accepted after the swap")
	}
}

func TestIdentityChangeRevalidates(t *testing.T) {
	// The policy allows group eng to reach 5432; alice logs out.
	eng := func(src *certs.Identity, proto uint8, port uint16) (bool, int) {
		if src.User != nil && slices.Contains(src.User.Groups, "eng") && proto == ProtoTCP && port == 5432 {
			return true, 0
		}
		return false, -1
	}
	loggedIn := *alice
	loggedIn.User = &certs.UserIdentity{Email: "alice@corp.example", Groups: []certs.Group{"eng"}}
	var cur atomic.Pointer[certs.Identity]
	cur.Store(&loggedIn)
	peers := PeersFunc(func(a netip.Addr) (*certs.Identity, bool) {
		id := cur.Load()
		return id, id.HasAddress(a)
	})
	h := newHarness(t, Config{Decider: eng, Peers: peers})
	in := tcpSeg(alice4, self4, 40000, 5432, header.TCPFlagAck, nil)
	if !h.recv(tcpSeg(alice4, self4, 40000, 5432, header.TCPFlagSyn, nil)) || !h.recv(in) {
		t.Fatal("flow dropped while logged in")
	}
	cur.Store(alice) // no user certificate any more
	if n := h.dev.Revalidate(); n != 1 {
		t.Fatalf("Revalidate dropped %d", n)
	}
	if h.recv(in) {
		t.Fatal("flow survived the logout")
	}

	// A peer removed from the view: its flows go too, as unknown-source.
	cur.Store(&loggedIn)
	if !h.recv(in) {
		t.Fatal("flow not reopened after login")
	}
	h.dev.SetPeers(peerMap{})
	if h.recv(in) || h.lastDrop() != DropUnknownSource {
		t.Fatalf("flow of a removed peer accepted (%q)", h.lastDrop())
	}
}

func TestICMPErrorsRelatedToFlows(t *testing.T) {
	h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice)})
	dns := udpDgram(self4, alice4, 40000, 53, []byte("query"))
	h.send(dns)
	if !h.recv(icmpErrorPkt(alice4, self4, icmp4DstUnreach, dns)) {
		t.Fatalf("port unreachable about our flow dropped (%q)", h.lastDrop())
	}
	// An error quoting a packet this node never sent is ordinary ICMP: denied.
	other := udpDgram(self4, alice4, 40001, 53, []byte("query"))
	if h.recv(icmpErrorPkt(alice4, self4, icmp4DstUnreach, other)) {
		t.Fatal("unrelated ICMP error accepted")
	}
	// A time exceeded from a router on the path (source not a peer address).
	router := netip.MustParseAddr("100.64.0.254")
	if !h.recv(icmpErrorPkt(router, self4, icmp4TimeExceeded, dns)) {
		t.Fatal("time exceeded about our flow dropped")
	}
	// IPv6 packet too big about a TCP flow, and a quoted echo.
	syn6 := tcpSeg(self6, alice6, 50000, 443, header.TCPFlagSyn, nil)
	h.send(syn6)
	if !h.recv(icmpErrorPkt(alice6, self6, icmp6PacketTooBig, syn6)) {
		t.Fatal("packet too big about our flow dropped")
	}
	ping := echo(self4, alice4, true, 42, 1)
	h.send(ping)
	if !h.recv(icmpErrorPkt(alice4, self4, icmp4DstUnreach, ping)) {
		t.Fatal("unreachable about our echo dropped")
	}
	// A quote whose source is not the error's destination is not related.
	if h.recv(icmpErrorPkt(alice6, self6, icmp6PacketTooBig, tcpSeg(bob6, alice6, 50000, 443, header.TCPFlagSyn, nil))) {
		t.Fatal("error quoting someone else's packet accepted")
	}
	if c := h.dev.Counters(); c.AcceptedRelated != 4 {
		t.Fatalf("AcceptedRelated = %d", c.AcceptedRelated)
	}
}

func TestFragments(t *testing.T) {
	h := newHarness(t, Config{Decider: policy(nil, rule{proto: ProtoUDP, port: 53}), Peers: peersOf(alice)})
	big := udpDgram(alice4, self4, 5000, 53, []byte(strings.Repeat("x", 64)))
	first, later := fragment4(big, 32)
	if !h.recv(first) || !h.recv(later) {
		t.Fatalf("fragments of an allowed datagram dropped (%q)", h.lastDrop())
	}
	// Later fragments of a refused datagram, or of no datagram seen, drop.
	denied := udpDgram(alice4, self4, 5000, 123, []byte(strings.Repeat("x", 64)))
	header.IPv4(denied).SetID(0x4321)
	dfirst, dlater := fragment4(denied, 32)
	if h.recv(dfirst) || h.recv(dlater) {
		t.Fatal("fragment of a refused datagram accepted")
	}
	if h.lastDrop() != DropFragment {
		t.Fatalf("drop = %q", h.lastDrop())
	}
	// RFC 1858: a TCP fragment at offset 8 is malformed.
	seg := tcpSeg(alice4, self4, 40000, 22, header.TCPFlagAck, []byte(strings.Repeat("y", 32)))
	_, tiny := fragment4(seg, 8)
	if h.recv(tiny) || h.lastDrop() != DropMalformed {
		t.Fatalf("offset-8 TCP fragment: %q", h.lastDrop())
	}
	// IPv6.
	big6 := udpDgram(alice6, self6, 5000, 53, []byte(strings.Repeat("z", 64)))
	f1, f2 := fragment6(big6, 40, 0xdeadbeef)
	if !h.recv(f1) || !h.recv(f2) {
		t.Fatalf("IPv6 fragments of an allowed datagram dropped (%q)", h.lastDrop())
	}
	_, orphan := fragment6(big6, 40, 0xfeed)
	if h.recv(orphan) || h.lastDrop() != DropFragment {
		t.Fatal("orphan IPv6 fragment accepted")
	}
	// Fragment records expire.
	h.recv(first)
	h.clock.Advance(DefaultTimeouts.Fragment + time.Second)
	if h.recv(later) {
		t.Fatal("late fragment accepted after the reassembly timeout")
	}
}

func TestWriteFromChecksSourceAgainstSender(t *testing.T) {
	h := newHarness(t, Config{Decider: policy(nil, rule{proto: ProtoTCP, port: 22}), Peers: peersOf(alice, bob)})
	write := func(sender *certs.Identity, pkt []byte) bool {
		if _, err := h.dev.WriteFrom(sender, [][]byte{withOffset(pkt)}, wgOffset); err != nil {
			t.Fatal(err)
		}
		return len(h.tun.takeWritten()) == 1
	}
	if write(alice, tcpSeg(bob4, self4, 40000, 22, header.TCPFlagSyn, nil)) || h.lastDrop() != DropSpoofedSource {
		t.Fatalf("alice sending as bob: %q", h.lastDrop())
	}
	if !write(alice, tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil)) {
		t.Fatal("alice sending as alice dropped")
	}
	// The identity given is the one the policy sees, even if Peers is empty.
	h.dev.SetPeers(nil)
	if !write(bob, tcpSeg(bob6, self6, 40000, 22, header.TCPFlagSyn, nil)) {
		t.Fatal("WriteFrom did not use the sender's identity")
	}
}

func TestWriteBatch(t *testing.T) {
	h := newHarness(t, Config{Decider: policy(nil, rule{proto: ProtoTCP, port: 22}), Peers: peersOf(alice)})
	pkts := [][]byte{
		tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil),
		tcpSeg(alice4, self4, 40001, 80, header.TCPFlagSyn, nil),
		{0x45, 0, 0},
		tcpSeg(alice6, self6, 40002, 22, header.TCPFlagSyn, nil),
		make([]byte, 4), // shorter than the offset
	}
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts[:4] {
		bufs[i] = withOffset(p)
	}
	bufs[4] = pkts[4]
	n, err := h.dev.Write(bufs, wgOffset)
	if err != nil || n != len(bufs) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	w := h.tun.takeWritten()
	if len(w) != 2 || string(w[0]) != string(pkts[0]) || string(w[1]) != string(pkts[3]) {
		t.Fatalf("wrote %d packets, want the 1st and 4th in order", len(w))
	}
	c := h.dev.Counters()
	if c.Dropped[DropDenied] != 1 || c.Dropped[DropMalformed] != 2 {
		t.Fatalf("Dropped = %v", c.Dropped)
	}
	// All dropped: the wrapped device is not called.
	if n, err := h.dev.Write([][]byte{withOffset(pkts[1])}, wgOffset); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if n, err := h.dev.Write(nil, wgOffset); n != 0 || err != nil {
		t.Fatalf("Write(nil) = %d, %v", n, err)
	}
}

func TestReadPassesEverything(t *testing.T) {
	h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice)})
	pkts := [][]byte{
		tcpSeg(self4, alice4, 50000, 443, header.TCPFlagSyn, nil),
		{0xde, 0xad}, // garbage from the OS still passes
		echo(self6, alice6, false, 1, 1),
	}
	h.tun.queue = append(h.tun.queue, pkts...)
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, 4)
	n, err := h.dev.Read(bufs, sizes, wgOffset)
	if err != nil || n != 3 {
		t.Fatalf("Read = %d, %v", n, err)
	}
	for i, p := range pkts {
		if string(bufs[i][wgOffset:wgOffset+sizes[i]]) != string(p) {
			t.Fatalf("packet %d changed", i)
		}
	}
	c := h.dev.Counters()
	if c.Outbound != 3 || c.Flows.Active != 1 { // only the SYN opens a flow
		t.Fatalf("counters: %+v", c)
	}
	// The other methods are the wrapped device's.
	if mtu, _ := h.dev.MTU(); mtu != 1420 {
		t.Fatalf("MTU = %d", mtu)
	}
	if h.dev.BatchSize() != 128 {
		t.Fatal("BatchSize not passed through")
	}
}

func TestCountersJSON(t *testing.T) {
	h := newHarness(t, Config{Decider: policy(nil, rule{proto: ProtoTCP, port: 22}), Peers: peersOf(alice)})
	h.recv(tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil))
	h.recv(tcpSeg(alice4, self4, 40000, 22, header.TCPFlagAck, nil))
	h.recv(tcpSeg(ghost4, self4, 40000, 22, header.TCPFlagSyn, nil))
	b, err := json.Marshal(h.dev.Counters())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"accepted_by_rule", "accepted_established", "accepted_related", "dropped", "dropped_total", "outbound", "flows"} {
		if _, ok := got[k]; !ok {
			t.Errorf("key %q missing in %s", k, b)
		}
	}
	dropped := got["dropped"].(map[string]any)
	for _, r := range DropReasons() {
		if _, ok := dropped[string(r)]; !ok {
			t.Errorf("reason %q missing in %s", r, b)
		}
	}
	if dropped["unknown-source"] != 1.0 || got["accepted_established"] != 1.0 {
		t.Errorf("values wrong: %s", b)
	}
	if rules := got["accepted_by_rule"].([]any); len(rules) != 1 || rules[0].(map[string]any)["rule"] != 0.0 {
		t.Errorf("accepted_by_rule wrong: %s", b)
	}
	// Rule indices beyond the counter range are counted, not lost.
	h.dev.ctr.rule(maxRuleCounters)
	h.dev.ctr.rule(-1)
	h.dev.ctr.rule(5000)
	c := h.dev.Counters()
	if c.AcceptedUnattributed != 2 || !slices.Equal(c.AcceptedByRule, []RuleCount{{0, 1}, {5000, 1}}) {
		t.Fatalf("counters: %+v", c)
	}
}

func TestCloseStopsSweeper(t *testing.T) {
	tn := newFakeTUN()
	d := Wrap(tn, Config{SweepInterval: time.Millisecond})
	time.Sleep(5 * time.Millisecond)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil { // idempotent on our side
		t.Fatal(err)
	}
	if !tn.closed {
		t.Fatal("wrapped device not closed")
	}
}

// TestConcurrentUse runs the packet paths, policy swaps, revalidation and
// counters at once; run with -race.
func TestConcurrentUse(t *testing.T) {
	var onDrop atomic.Uint64
	h := newHarness(t, Config{
		Decider:  policy(nil, rule{proto: ProtoTCP, port: 22}),
		Peers:    peersOf(alice, bob),
		MaxFlows: 256,
		OnDrop:   func(Drop) { onDrop.Add(1) },
	})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			src := []netip.Addr{alice4, bob4, alice6, bob6}[g]
			dst := self4
			if src.Is6() {
				dst = self6
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				port := uint16(i % 500)
				batch := [][]byte{
					withOffset(tcpSeg(src, dst, 30000+port, 22, header.TCPFlagSyn, nil)),
					withOffset(tcpSeg(src, dst, 30000+port, 22, header.TCPFlagAck, nil)),
					withOffset(udpDgram(src, dst, port, 53, nil)),
				}
				h.dev.Write(batch, wgOffset)
				bufs := [][]byte{make([]byte, 128)}
				h.tun.mu.Lock()
				h.tun.queue = append(h.tun.queue, udpDgram(dst, src, 40000+port, 53, nil))
				h.tun.written = nil
				h.tun.mu.Unlock()
				h.dev.Read(bufs, []int{0}, wgOffset)
			}
		})
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				h.dev.SetDecider(denyAll)
			} else {
				h.dev.SetDecider(policy(nil, rule{proto: ProtoTCP, port: 22}))
			}
			h.dev.Revalidate()
			h.dev.Sweep()
			_ = h.dev.Counters()
		}
	})
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	c := h.dev.Counters()
	if c.Flows.Active > c.Flows.Max {
		t.Fatalf("Active %d > Max %d", c.Flows.Active, c.Flows.Max)
	}
	if c.DroppedTotal != onDrop.Load() || c.DroppedTotal == 0 {
		t.Fatalf("DroppedTotal %d, OnDrop called %d times", c.DroppedTotal, onDrop.Load())
	}
}
