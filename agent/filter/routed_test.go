package filter

import (
	"net/netip"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The subnet behind this node (a router) and a host on it that runs no agent.
var (
	lan      = netip.MustParsePrefix("10.0.0.0/24")
	lanHost  = netip.MustParseAddr("10.0.0.5")
	offLAN   = netip.MustParseAddr("10.0.1.5") // outside lan
	lan6     = netip.MustParsePrefix("2001:db8:1::/48")
	lanHost6 = netip.MustParseAddr("2001:db8:1::5")
)

// TestRoutedFlowAllowedByPrefixRule: on a subnet router, a peer's packet to
// a host on the served LAN is decided by the destination address; accepted,
// its flow is tracked, the LAN host's reply leaves through the device and
// the peer's next packets pass as established, as for local traffic.
func TestRoutedFlowAllowedByPrefixRule(t *testing.T) {
	var calls atomic.Int64
	h := newHarness(t, Config{Decider: policy(&calls, rule{device: "alice-laptop", dst: lan, proto: ProtoTCP, port: 22}), Peers: peersOf(alice, bob)})
	h.dev.SetServed([]netip.Prefix{lan, lan6})
	if !h.recv(tcpSeg(alice4, lanHost, 40000, 22, header.TCPFlagSyn, nil)) {
		t.Fatalf("routed SYN to %s:22 dropped (%s)", lanHost, h.lastDrop())
	}
	h.send(tcpSeg(lanHost, alice4, 22, 40000, header.TCPFlagSyn|header.TCPFlagAck, nil))
	if !h.recv(tcpSeg(alice4, lanHost, 40000, 22, header.TCPFlagAck, []byte("x"))) {
		t.Fatalf("established routed flow dropped (%s)", h.lastDrop())
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("policy asked %d times, want once (the flow's first packet)", n)
	}
	c := h.dev.Counters()
	if len(c.AcceptedByRule) != 1 || c.AcceptedByRule[0] != (RuleCount{Rule: 0, Accepted: 1}) || c.AcceptedEstablished != 1 {
		t.Fatalf("counters %+v", c)
	}
	// A flow the LAN host opens towards the peer: its reply is established.
	h.send(udpDgram(lanHost, alice4, 5353, 5353, []byte("q")))
	if !h.recv(udpDgram(alice4, lanHost, 5353, 5353, []byte("a"))) {
		t.Fatalf("reply to the LAN host's flow dropped (%s)", h.lastDrop())
	}
	// The same for IPv6, and the rule's prefix decides: the IPv6 LAN has none.
	if h.recv(tcpSeg(alice6, lanHost6, 40000, 22, header.TCPFlagSyn, nil)) || h.lastDrop() != DropDenied {
		t.Fatalf("routed IPv6 SYN no rule allows: accepted or %s", h.lastDrop())
	}
}

// TestRoutedFlowRefusedByPolicy: a served destination no rule allows, or
// that a rule allows for another peer only, is dropped as denied.
func TestRoutedFlowRefusedByPolicy(t *testing.T) {
	h := newHarness(t, Config{Decider: policy(nil, rule{device: "alice-laptop", dst: lan, proto: ProtoTCP, port: 22}), Peers: peersOf(alice, bob)})
	h.dev.SetServed([]netip.Prefix{lan})
	for _, pkt := range [][]byte{
		tcpSeg(alice4, lanHost, 40000, 23, header.TCPFlagSyn, nil),
		tcpSeg(bob4, lanHost, 40000, 22, header.TCPFlagSyn, nil),
		udpDgram(alice4, lanHost, 5000, 22, nil),
	} {
		if h.recv(pkt) || h.lastDrop() != DropDenied {
			t.Fatalf("refused routed packet: accepted or %q", h.lastDrop())
		}
	}
}

// TestUnservedDestinationDropped: a packet to an address that is neither
// this node's nor inside a prefix it serves reaches neither the policy nor
// the operating system (which might forward it), even when the policy would
// accept anything; it is counted as "unserved-destination". Before the
// filter looked at destinations, such packets were handed to the OS.
func TestUnservedDestinationDropped(t *testing.T) {
	var calls atomic.Int64
	anything := policy(&calls, rule{proto: ProtoTCP}, rule{proto: ProtoUDP}, rule{proto: ProtoICMP})
	for _, tc := range []struct {
		name   string
		served []netip.Prefix
		pkt    []byte
	}{
		{"nothing served", nil, tcpSeg(alice4, lanHost, 40000, 22, header.TCPFlagSyn, nil)},
		{"outside the served prefix", []netip.Prefix{lan}, tcpSeg(alice4, offLAN, 40000, 22, header.TCPFlagSyn, nil)},
		{"the internet, not an exit node", []netip.Prefix{lan}, udpDgram(alice4, netip.MustParseAddr("8.8.8.8"), 5000, 53, nil)},
		{"another peer's address", []netip.Prefix{lan}, tcpSeg(alice4, bob4, 40000, 22, header.TCPFlagSyn, nil)},
		{"an overlay address no peer holds", nil, echo(alice4, ghost4, true, 1, 1)},
		{"IPv6, nothing served", nil, tcpSeg(alice6, lanHost6, 40000, 22, header.TCPFlagSyn, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls.Store(0)
			h := newHarness(t, Config{Decider: anything, Peers: peersOf(alice, bob)})
			h.dev.SetServed(tc.served)
			if h.recv(tc.pkt) {
				t.Fatal("packet to an unserved destination reached the operating system")
			}
			if h.lastDrop() != DropUnservedDestination || h.dev.Counters().Dropped[DropUnservedDestination] != 1 {
				t.Fatalf("dropped as %q, counters %+v", h.lastDrop(), h.dev.Counters().Dropped)
			}
			if calls.Load() != 0 {
				t.Fatal("the policy was asked about an unserved destination")
			}
			// Local traffic is unaffected.
			if !h.recv(tcpSeg(alice4, self4, 40001, 22, header.TCPFlagSyn, nil)) {
				t.Fatalf("local SYN dropped (%s)", h.lastDrop())
			}
		})
	}
}

// TestExitNodeServesAllButPeers: an exit node serves 0.0.0.0/0 and ::/0;
// internet destinations are decided by the policy, but another peer's
// overlay address is never routed through it (the packet would reach that
// peer as if the exit node had sent it).
func TestExitNodeServesAllButPeers(t *testing.T) {
	anywhere := netip.MustParsePrefix("0.0.0.0/0")
	h := newHarness(t, Config{Decider: policy(nil, rule{dst: anywhere, proto: ProtoTCP, port: 443}, rule{proto: ProtoTCP, port: 22}), Peers: peersOf(alice, bob)})
	h.dev.SetServed([]netip.Prefix{anywhere, netip.MustParsePrefix("::/0")})
	web := netip.MustParseAddr("192.0.2.80")
	if !h.recv(tcpSeg(alice4, web, 40000, 443, header.TCPFlagSyn, nil)) {
		t.Fatalf("exit traffic to %s:443 dropped (%s)", web, h.lastDrop())
	}
	if h.recv(tcpSeg(alice4, web, 40000, 80, header.TCPFlagSyn, nil)) || h.lastDrop() != DropDenied {
		t.Fatalf("exit traffic to :80: accepted or %s", h.lastDrop())
	}
	if h.recv(tcpSeg(alice6, netip.MustParseAddr("2001:db8::80"), 40000, 443, header.TCPFlagSyn, nil)) || h.lastDrop() != DropDenied {
		t.Fatalf("IPv6 exit traffic no rule allows: accepted or %s", h.lastDrop())
	}
	for _, pkt := range [][]byte{
		tcpSeg(alice4, bob4, 40000, 22, header.TCPFlagSyn, nil),
		tcpSeg(alice6, bob6, 40000, 22, header.TCPFlagSyn, nil),
	} {
		if h.recv(pkt) || h.lastDrop() != DropUnservedDestination {
			t.Fatalf("packet to a peer through the exit node: accepted or %s", h.lastDrop())
		}
	}
}

// TestServedPrefixWithdrawn: when a prefix stops being served (the
// certificate's route is gone), its routed flows are cut at Revalidate, and
// new ones are refused.
func TestServedPrefixWithdrawn(t *testing.T) {
	h := newHarness(t, Config{Decider: policy(nil, rule{dst: lan, proto: ProtoTCP, port: 22}), Peers: peersOf(alice)})
	h.dev.SetServed([]netip.Prefix{lan})
	ack := tcpSeg(alice4, lanHost, 40000, 22, header.TCPFlagAck, []byte("x"))
	if !h.recv(tcpSeg(alice4, lanHost, 40000, 22, header.TCPFlagSyn, nil)) || !h.recv(ack) {
		t.Fatalf("routed flow dropped (%s)", h.lastDrop())
	}
	h.dev.SetServed(nil)
	if n := h.dev.Revalidate(); n != 1 {
		t.Fatalf("Revalidate dropped %d flows, want the routed one", n)
	}
	if h.recv(ack) {
		t.Fatal("routed flow passed after its prefix was withdrawn")
	}
	if h.recv(tcpSeg(alice4, lanHost, 40001, 22, header.TCPFlagSyn, nil)) || h.lastDrop() != DropUnservedDestination {
		t.Fatalf("new routed flow after withdrawal: accepted or %s", h.lastDrop())
	}
}
