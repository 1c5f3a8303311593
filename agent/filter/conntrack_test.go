package filter

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

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
