package filter

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/certmesh/certmesh/certs"
)

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
