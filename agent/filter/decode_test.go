package filter

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ext6 is an IPv6 extension header to insert with withExt6.
type ext6 struct {
	typ  uint8
	size int // bytes, a multiple of 8 (of 4 for AH)
}

// withExt6 inserts extension headers between the IPv6 header of pkt and its
// payload. Option headers are filled with a PadN option.
func withExt6(pkt []byte, exts ...ext6) []byte {
	ip := header.IPv6(pkt)
	next := ip.NextHeader()
	pl := pkt[header.IPv6MinimumSize:]
	out := append([]byte(nil), pkt[:header.IPv6MinimumSize]...)
	total := 0
	for _, e := range exts {
		total += e.size
	}
	header.IPv6(out).SetPayloadLength(uint16(total + len(pl)))
	header.IPv6(out).SetNextHeader(exts[0].typ)
	for i, e := range exts {
		h := make([]byte, e.size)
		if i+1 < len(exts) {
			h[0] = exts[i+1].typ
		} else {
			h[0] = next
		}
		switch e.typ {
		case ext6AH:
			h[1] = byte(e.size/4 - 2)
		case ext6Fragment:
			// offset 0, M=0: an atomic fragment
		default:
			h[1] = byte(e.size/8 - 1)
			h[2], h[3] = 1, byte(e.size-4) // PadN
		}
		out = append(out, h...)
	}
	return append(out, pl...)
}

func TestDecode(t *testing.T) {
	a4, b4 := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.4.5.6")
	a6, b6 := netip.MustParseAddr("fd00::a"), netip.MustParseAddr("fd00::b")
	tcp6 := tcpSeg(a6, b6, 1111, 2222, header.TCPFlagSyn, nil)
	udp6 := udpDgram(a6, b6, 3333, 4444, []byte("x"))

	withOptions := tcpSeg(a4, b4, 1111, 2222, header.TCPFlagSyn, nil)
	{ // IHL 6: one 4-byte option word (NOPs)
		b := make([]byte, len(withOptions)+4)
		copy(b, withOptions[:20])
		b[20], b[21], b[22], b[23] = 1, 1, 1, 0
		copy(b[24:], withOptions[20:])
		ip := header.IPv4(b)
		ip.SetHeaderLength(24)
		ip.SetTotalLength(uint16(len(b)))
		withOptions = b
	}
	truncExt := withExt6(tcp6, ext6{ext6HopByHop, 8})
	truncExt[header.IPv6MinimumSize+1] = 3 // claims 32 bytes
	twoFrags := withExt6(tcp6, ext6{ext6Fragment, 8}, ext6{ext6Fragment, 8})
	esp := withExt6(tcp6, ext6{ext6DestOpts, 8})
	esp[header.IPv6MinimumSize] = 50
	short6 := echo(a6, b6, true, 1, 1)
	short6 = short6[:header.IPv6MinimumSize+4]
	header.IPv6(short6).SetPayloadLength(4)
	quote4 := udpDgram(b4, a4, 5, 6, nil)
	truncQuote := icmpErrorPkt(a4, b4, icmp4DstUnreach, quote4[:header.IPv4MinimumSize+4])

	tests := []struct {
		name         string
		pkt          []byte
		wantErr      bool
		proto        uint8
		sport, dport uint16
		icmp         icmpClass
		frag         fragKind
		hasInner     bool
	}{
		{name: "ipv4 tcp", pkt: tcpSeg(a4, b4, 1111, 2222, header.TCPFlagSyn, nil), proto: ProtoTCP, sport: 1111, dport: 2222},
		{name: "ipv4 options", pkt: withOptions, proto: ProtoTCP, sport: 1111, dport: 2222},
		{name: "ipv6 hop-by-hop", pkt: withExt6(tcp6, ext6{ext6HopByHop, 8}), proto: ProtoTCP, sport: 1111, dport: 2222},
		{name: "ipv6 dest+routing", pkt: withExt6(udp6, ext6{ext6DestOpts, 16}, ext6{ext6Routing, 8}), proto: ProtoUDP, sport: 3333, dport: 4444},
		{name: "ipv6 AH", pkt: withExt6(tcp6, ext6{ext6AH, 16}), proto: ProtoTCP, sport: 1111, dport: 2222},
		{name: "ipv6 atomic fragment", pkt: withExt6(tcp6, ext6{ext6Fragment, 8}), proto: ProtoTCP, sport: 1111, dport: 2222},
		{name: "ipv6 ESP", pkt: esp, proto: 50},
		{name: "ipv6 truncated ext header", pkt: truncExt, wantErr: true},
		{name: "ipv6 two fragment headers", pkt: twoFrags, wantErr: true},
		{name: "icmpv6 too short", pkt: short6, wantErr: true},
		{name: "icmp echo", pkt: echo(a4, b4, true, 99, 1), proto: ProtoICMP, sport: 99, icmp: icmpEchoRequest},
		{name: "icmpv6 echo reply", pkt: echo(a6, b6, false, 98, 1), proto: ProtoICMPv6, sport: 98, icmp: icmpEchoReply},
		{name: "icmp error", pkt: icmpErrorPkt(a4, b4, icmp4TimeExceeded, quote4), proto: ProtoICMP, icmp: icmpError, hasInner: true},
		{name: "icmp error short quote", pkt: truncQuote, proto: ProtoICMP, icmp: icmpError},
		{name: "icmpv6 error through ext header", pkt: icmpErrorPkt(a6, b6, icmp6DstUnreach, withExt6(tcp6, ext6{ext6DestOpts, 8})), proto: ProtoICMPv6, icmp: icmpError, hasInner: true},
		{name: "icmp redirect", pkt: icmpMsg(a4, b4, 5, [4]byte{}, nil), proto: ProtoICMP, icmp: icmpOther},
		{name: "gre", pkt: ipPacket(a4, b4, 47, make([]byte, 4)), proto: 47},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p packet
			err := decode(tc.pkt, &p)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if p.proto != tc.proto || p.sport != tc.sport || p.dport != tc.dport || p.icmp != tc.icmp || p.frag != tc.frag || p.hasInner != tc.hasInner {
				t.Fatalf("decoded %+v", p)
			}
			if p.version == 4 && (p.src != a4 || p.dst != b4) || p.version == 6 && (p.src != a6 || p.dst != b6) {
				t.Fatalf("addresses %v -> %v", p.src, p.dst)
			}
		})
	}
	t.Run("icmp error quote", func(t *testing.T) {
		var p packet
		if err := decode(icmpErrorPkt(a4, b4, icmp4TimeExceeded, quote4), &p); err != nil {
			t.Fatal(err)
		}
		want := innerPacket{proto: ProtoUDP, src: b4, dst: a4, sport: 5, dport: 6}
		if p.inner != want {
			t.Fatalf("inner %+v, want %+v", p.inner, want)
		}
	})
}

func TestFragTableIsBounded(t *testing.T) {
	ft := newFragTable(4, DefaultTimeouts.Fragment)
	k := func(id uint32) fragKey { return fragKey{id: id, proto: ProtoUDP} }
	for id := range uint32(10) {
		ft.add(k(id), 0)
		if len(ft.m) > 4 {
			t.Fatalf("fragment table holds %d", len(ft.m))
		}
	}
	if !ft.has(k(9), 0) {
		t.Fatal("latest datagram forgotten")
	}
	// Expired records go first.
	late := int64(DefaultTimeouts.Fragment) + 1
	ft.add(k(100), late)
	if len(ft.m) != 1 || !ft.has(k(100), late) {
		t.Fatalf("expired records kept: %d", len(ft.m))
	}
}
