package filter

import (
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testclock"
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
	dst    netip.Prefix   // zero = any
	proto  uint8
	port   uint16 // 0 = any
}

// policy compiles rules into a Decider that also counts its calls.
func policy(calls *atomic.Int64, rules ...rule) Decider {
	return func(src *certs.Identity, dst netip.Addr, proto uint8, port uint16) (bool, int) {
		if calls != nil {
			calls.Add(1)
		}
		for i, r := range rules {
			if (r.device == "" || r.device == src.DeviceID) && (!r.dst.IsValid() || r.dst.Contains(dst)) &&
				r.proto == proto && (r.port == 0 || r.port == port) {
				return true, i
			}
		}
		return false, -1
	}
}

func denyAll(*certs.Identity, netip.Addr, uint8, uint16) (bool, int) { return false, -1 }

// selfAddrs are this node's addresses, the harness's default Config.Local.
var selfAddrs = []netip.Addr{self4, self6}

type harness struct {
	t     *testing.T
	tun   *fakeTUN
	dev   *Device
	clock *testclock.Clock
	drops []Drop
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, tun: newFakeTUN(), clock: testclock.At(time.Unix(1_700_000_000, 0))}
	if cfg.Now == nil {
		cfg.Now = h.clock.Now
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = -1
	}
	if cfg.Local == nil {
		cfg.Local = selfAddrs
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

// Packet builders: real packets with correct IP and transport checksums,
// built with gVisor's header encoders.

func taddr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.AsSlice()) }

// ipPacket wraps l4 (a transport header and payload whose checksum is
// already set) in an IPv4 or IPv6 header, by the version of src.
func ipPacket(src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	if src.Is4() {
		b := make([]byte, header.IPv4MinimumSize+len(l4))
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(b)),
			ID:          0x1234,
			TTL:         64,
			Protocol:    proto,
			SrcAddr:     taddr(src),
			DstAddr:     taddr(dst),
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(b[header.IPv4MinimumSize:], l4)
		return b
	}
	b := make([]byte, header.IPv6MinimumSize+len(l4))
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(len(l4)),
		TransportProtocol: tcpip.TransportProtocolNumber(proto),
		HopLimit:          64,
		SrcAddr:           taddr(src),
		DstAddr:           taddr(dst),
	})
	copy(b[header.IPv6MinimumSize:], l4)
	return b
}

func tcpSeg(src, dst netip.Addr, sport, dport uint16, flags header.TCPFlags, payload []byte) []byte {
	l4 := make([]byte, header.TCPMinimumSize+len(payload))
	t := header.TCP(l4)
	t.Encode(&header.TCPFields{
		SrcPort:    sport,
		DstPort:    dport,
		SeqNum:     1000,
		AckNum:     2000,
		DataOffset: header.TCPMinimumSize,
		Flags:      flags,
		WindowSize: 65535,
	})
	copy(l4[header.TCPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, taddr(src), taddr(dst), uint16(len(l4)))
	xsum = checksum.Checksum(payload, xsum)
	t.SetChecksum(^t.CalculateChecksum(xsum))
	return ipPacket(src, dst, ProtoTCP, l4)
}

func udpDgram(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	l4 := make([]byte, header.UDPMinimumSize+len(payload))
	u := header.UDP(l4)
	u.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(l4))})
	copy(l4[header.UDPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, taddr(src), taddr(dst), uint16(len(l4)))
	xsum = checksum.Checksum(payload, xsum)
	u.SetChecksum(^u.CalculateChecksum(xsum))
	return ipPacket(src, dst, ProtoUDP, l4)
}

// icmpMsg builds an ICMP (IPv4) or ICMPv6 message of type typ whose 4
// type-specific bytes are rest and whose body is body.
func icmpMsg(src, dst netip.Addr, typ uint8, rest [4]byte, body []byte) []byte {
	l4 := make([]byte, 8+len(body))
	l4[0] = typ
	copy(l4[4:8], rest[:])
	copy(l4[8:], body)
	if src.Is4() {
		h := header.ICMPv4(l4)
		h.SetChecksum(header.ICMPv4Checksum(h[:8], checksum.Checksum(body, 0)))
		return ipPacket(src, dst, ProtoICMP, l4)
	}
	h := header.ICMPv6(l4)
	h.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header:      h[:8],
		Src:         taddr(src),
		Dst:         taddr(dst),
		PayloadCsum: checksum.Checksum(body, 0),
		PayloadLen:  len(body),
	}))
	return ipPacket(src, dst, ProtoICMPv6, l4)
}

func echo(src, dst netip.Addr, request bool, id, seq uint16) []byte {
	var typ uint8
	switch {
	case src.Is4() && request:
		typ = icmp4Echo
	case src.Is4():
		typ = icmp4EchoReply
	case request:
		typ = icmp6EchoRequest
	default:
		typ = icmp6EchoReply
	}
	return icmpMsg(src, dst, typ, [4]byte{byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)}, []byte("ping payload"))
}

// icmpErrorPkt builds an ICMP error of type typ from src to dst quoting the
// first bytes of orig (RFC 792: IP header + 8 bytes; RFC 4443: as much as fits).
func icmpErrorPkt(src, dst netip.Addr, typ uint8, orig []byte) []byte {
	q := orig
	if src.Is4() {
		hl := int(header.IPv4(orig).HeaderLength())
		q = orig[:min(len(orig), hl+8)]
	}
	return icmpMsg(src, dst, typ, [4]byte{}, q)
}

// fragment4 splits an IPv4 packet's payload at byte off (a multiple of 8)
// into a first fragment and a later one.
func fragment4(pkt []byte, off int) (first, later []byte) {
	ip := header.IPv4(pkt)
	hl := int(ip.HeaderLength())
	pl := pkt[hl:]
	mk := func(part []byte, flags uint8, fo uint16) []byte {
		b := make([]byte, hl+len(part))
		copy(b, pkt[:hl])
		copy(b[hl:], part)
		h := header.IPv4(b)
		h.SetTotalLength(uint16(len(b)))
		h.SetFlagsFragmentOffset(flags, fo)
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
		return b
	}
	return mk(pl[:off], header.IPv4FlagMoreFragments, 0), mk(pl[off:], 0, uint16(off))
}

// fragment6 splits an IPv6 packet (without extension headers) at payload
// byte off (a multiple of 8) with a Fragment header of identification id.
func fragment6(pkt []byte, off int, id uint32) (first, later []byte) {
	ip := header.IPv6(pkt)
	next := ip.NextHeader()
	pl := pkt[header.IPv6MinimumSize:]
	mk := func(part []byte, fo uint16, more bool) []byte {
		b := make([]byte, header.IPv6MinimumSize+8+len(part))
		copy(b, pkt[:header.IPv6MinimumSize])
		h := header.IPv6(b)
		h.SetNextHeader(header.IPv6FragmentHeader)
		h.SetPayloadLength(uint16(8 + len(part)))
		f := b[header.IPv6MinimumSize:]
		f[0] = next
		v := fo << 3
		if more {
			v |= 1
		}
		f[2], f[3] = byte(v>>8), byte(v)
		f[4], f[5], f[6], f[7] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id)
		copy(f[8:], part)
		return b
	}
	return mk(pl[:off], 0, true), mk(pl[off:], uint16(off/8), false)
}

// fakeTUN is the other side of the tun.Device boundary: it hands out queued
// packets on Read and records what is written.
type fakeTUN struct {
	mu      sync.Mutex
	queue   [][]byte
	written [][]byte
	closed  bool
	events  chan tun.Event
}

func newFakeTUN() *fakeTUN { return &fakeTUN{events: make(chan tun.Event)} }

func (f *fakeTUN) File() *os.File { return nil }

func (f *fakeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for n < len(bufs) && len(f.queue) > 0 {
		sizes[n] = copy(bufs[n][offset:], f.queue[0])
		f.queue = f.queue[1:]
		n++
	}
	return n, nil
}

func (f *fakeTUN) Write(bufs [][]byte, offset int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range bufs {
		f.written = append(f.written, append([]byte(nil), b[offset:]...))
	}
	return len(bufs), nil
}

func (f *fakeTUN) MTU() (int, error)        { return 1420, nil }
func (f *fakeTUN) Name() (string, error)    { return "fake0", nil }
func (f *fakeTUN) Events() <-chan tun.Event { return f.events }
func (f *fakeTUN) BatchSize() int           { return 128 }
func (f *fakeTUN) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.events)
	}
	return nil
}

func (f *fakeTUN) takeWritten() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.written
	f.written = nil
	return w
}

// TestBuildersMakeValidPackets checks the builders against gVisor's own
// checksum validation, so that the filter is tested on packets a real stack
// would accept.
func TestBuildersMakeValidPackets(t *testing.T) {
	a4, b4 := netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2")
	a6, b6 := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	for _, pkt := range [][]byte{
		tcpSeg(a4, b4, 1234, 22, header.TCPFlagSyn, nil),
		tcpSeg(a6, b6, 1234, 22, header.TCPFlagAck|header.TCPFlagPsh, []byte("hello")),
		udpDgram(a4, b4, 5353, 53, []byte("q")),
		udpDgram(a6, b6, 5353, 53, []byte("q")),
		echo(a4, b4, true, 7, 1),
		echo(a6, b6, true, 7, 1),
	} {
		var src, dst tcpip.Address
		var proto uint8
		var l4 []byte
		if header.IPVersion(pkt) == 4 {
			ip := header.IPv4(pkt)
			if !ip.IsValid(len(pkt)) || !ip.IsChecksumValid() {
				t.Fatalf("invalid IPv4 header: %x", pkt)
			}
			src, dst, proto, l4 = ip.SourceAddress(), ip.DestinationAddress(), ip.Protocol(), ip.Payload()
		} else {
			ip := header.IPv6(pkt)
			if !ip.IsValid(len(pkt)) {
				t.Fatalf("invalid IPv6 header: %x", pkt)
			}
			src, dst, proto, l4 = ip.SourceAddress(), ip.DestinationAddress(), ip.NextHeader(), ip.Payload()
		}
		switch proto {
		case ProtoTCP:
			tc := header.TCP(l4)
			if !tc.IsChecksumValid(src, dst, checksum.Checksum(tc.Payload(), 0), uint16(len(tc.Payload()))) {
				t.Fatalf("bad TCP checksum: %x", pkt)
			}
		case ProtoUDP:
			u := header.UDP(l4)
			if !u.IsChecksumValid(src, dst, checksum.Checksum(u.Payload(), 0)) {
				t.Fatalf("bad UDP checksum: %x", pkt)
			}
		case ProtoICMP:
			if checksum.Checksum(l4, 0) != 0xffff {
				t.Fatalf("bad ICMP checksum: %x", pkt)
			}
		case ProtoICMPv6:
			xsum := header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, src, dst, uint16(len(l4)))
			if checksum.Checksum(l4, xsum) != 0xffff {
				t.Fatalf("bad ICMPv6 checksum: %x", pkt)
			}
		}
	}
}
