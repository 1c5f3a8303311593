package filter

import (
	"net/netip"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/certmesh/certmesh/certs"
)

func seedPackets() [][]byte {
	a4, b4 := netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("100.64.0.1")
	a6, b6 := netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::1")
	tcp6 := tcpSeg(a6, b6, 40000, 22, header.TCPFlagSyn, nil)
	udp4 := udpDgram(a4, b4, 5000, 53, make([]byte, 64))
	f1, f2 := fragment4(udp4, 32)
	g1, g2 := fragment6(udpDgram(a6, b6, 5000, 53, make([]byte, 64)), 40, 7)
	return [][]byte{
		tcpSeg(a4, b4, 40000, 22, header.TCPFlagSyn, nil),
		tcpSeg(b4, a4, 22, 40000, header.TCPFlagSyn|header.TCPFlagAck, []byte("x")),
		tcp6, udp4, f1, f2, g1, g2,
		udpDgram(a6, b6, 5000, 53, []byte("q")),
		echo(a4, b4, true, 1, 1), echo(b4, a4, false, 1, 1),
		echo(a6, b6, true, 1, 1), echo(b6, a6, false, 1, 1),
		icmpErrorPkt(a4, b4, icmp4DstUnreach, udpDgram(b4, a4, 5000, 53, nil)),
		icmpErrorPkt(a6, b6, icmp6PacketTooBig, tcpSeg(b6, a6, 40000, 22, header.TCPFlagSyn, nil)),
		withExt6(tcp6, ext6{ext6HopByHop, 8}, ext6{ext6AH, 16}, ext6{ext6Fragment, 8}),
		ipPacket(a4, b4, 47, make([]byte, 8)),
		{}, {0x45}, {0x60},
	}
}

// FuzzDecode: no input may make the decoder panic, and what it accepts must
// be consistent with the input.
func FuzzDecode(f *testing.F) {
	for _, p := range seedPackets() {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packet
		if err := decode(b, &p); err != nil {
			return
		}
		switch p.version {
		case 4:
			if !p.src.Is4() || !p.dst.Is4() || len(b) < header.IPv4MinimumSize {
				t.Fatalf("IPv4 packet decoded with %v -> %v from %d bytes", p.src, p.dst, len(b))
			}
		case 6:
			if !p.src.Is6() || !p.dst.Is6() || len(b) < header.IPv6MinimumSize {
				t.Fatalf("IPv6 packet decoded with %v -> %v from %d bytes", p.src, p.dst, len(b))
			}
		default:
			t.Fatalf("version %d", p.version)
		}
		if p.frag == fragLater && (p.sport != 0 || p.dport != 0 || p.icmp != icmpOther) {
			t.Fatalf("later fragment with transport fields: %+v", p)
		}
		if p.hasInner && p.inner.src.BitLen() != p.src.BitLen() {
			t.Fatalf("ICMP error quoting another IP version: %+v", p)
		}
		// Decoding is a pure function of the bytes.
		var again packet
		if err := decode(append([]byte(nil), b...), &again); err != nil || again != p {
			t.Fatalf("decode not deterministic: %+v vs %+v (%v)", p, again, err)
		}
	})
}

// FuzzWrite drives the whole filter with random packets in both directions:
// it must never panic, write anything it did not accept, or lose a count.
func FuzzWrite(f *testing.F) {
	seeds := seedPackets()
	for i, p := range seeds {
		f.Add(p, seeds[(i+1)%len(seeds)], seeds[(i+2)%len(seeds)], uint8(i))
	}
	f.Fuzz(func(t *testing.T, in1, in2, out []byte, knob uint8) {
		someone := &certs.Identity{DeviceID: "fuzz"}
		peers := PeersFunc(func(a netip.Addr) (*certs.Identity, bool) {
			// Half the address space belongs to a peer.
			return someone, a.AsSlice()[len(a.AsSlice())-1]%2 == 0
		})
		local := []netip.Addr{netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("fd00::1")}
		var served []netip.Prefix
		if knob&4 != 0 { // a router: half of each address family, or an exit node
			served = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/1"), netip.MustParsePrefix("fd00::/8")}
			if knob&8 != 0 {
				served = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
			}
		}
		dec := Decider(func(_ *certs.Identity, dst netip.Addr, proto uint8, port uint16) (bool, int) {
			// The policy is asked only about local and served destinations
			// no peer holds.
			_, peer := peers.Lookup(dst)
			inServed := false
			for _, p := range served {
				inServed = inServed || p.Contains(dst)
			}
			if !slices.Contains(local, dst) && (!inServed || peer) {
				t.Fatalf("the policy was asked about %v (local %v, served %v, a peer's: %v)", dst, local, served, peer)
			}
			if (uint16(proto)+port)%3 == 0 {
				return true, int(port % 7)
			}
			return false, -1
		})
		tn := newFakeTUN()
		d := Wrap(tn, Config{Decider: dec, Peers: peers, Local: local, MaxFlows: 4, MaxFragments: 2, SweepInterval: -1})
		defer d.Close()
		if knob&1 != 0 {
			d.SetDecider(nil)
		}
		d.SetServed(served)

		tn.queue = [][]byte{out, in1}
		bufs := [][]byte{make([]byte, 2048), make([]byte, 2048)}
		if _, err := d.Read(bufs, []int{0, 0}, wgOffset); err != nil {
			t.Fatal(err)
		}
		offset := int(knob>>1) % 24
		batch := [][]byte{pad(in1, offset), pad(in2, offset), pad(out, offset), in1}
		n, err := d.Write(batch, offset)
		if err != nil || n != len(batch) {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if knob&2 != 0 {
			d.SetDecider(dec)
			d.Revalidate()
		}
		if _, err := d.WriteFrom(someone, batch[:2], offset); err != nil {
			t.Fatal(err)
		}

		c := d.Counters()
		var byRule uint64
		for _, r := range c.AcceptedByRule {
			byRule += r.Accepted
		}
		accepted := byRule + c.AcceptedUnattributed + c.AcceptedEstablished + c.AcceptedRelated
		if accepted+c.DroppedTotal != 6 {
			t.Fatalf("%d accepted + %d dropped != 6 packets: %+v", accepted, c.DroppedTotal, c)
		}
		if uint64(len(tn.written)) != accepted {
			t.Fatalf("%d written, %d accepted", len(tn.written), accepted)
		}
		if c.Flows.Active > c.Flows.Max {
			t.Fatalf("flows %d > %d", c.Flows.Active, c.Flows.Max)
		}
	})
}

func pad(p []byte, offset int) []byte {
	b := make([]byte, offset+len(p))
	copy(b[offset:], p)
	return b
}
