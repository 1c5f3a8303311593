package filter

import (
	"errors"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// IP protocol numbers the filter understands.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// TCP flag bits (header.TCPFlags values, as bytes).
const (
	tcpFIN = uint8(header.TCPFlagFin)
	tcpSYN = uint8(header.TCPFlagSyn)
	tcpRST = uint8(header.TCPFlagRst)
	tcpACK = uint8(header.TCPFlagAck)
)

// ICMP types the filter gives a meaning to.
const (
	icmp4EchoReply    = uint8(header.ICMPv4EchoReply)
	icmp4DstUnreach   = uint8(header.ICMPv4DstUnreachable)
	icmp4SrcQuench    = uint8(header.ICMPv4SrcQuench)
	icmp4Echo         = uint8(header.ICMPv4Echo)
	icmp4TimeExceeded = uint8(header.ICMPv4TimeExceeded)
	icmp4ParamProblem = uint8(header.ICMPv4ParamProblem)

	icmp6DstUnreach   = uint8(header.ICMPv6DstUnreachable)
	icmp6PacketTooBig = uint8(header.ICMPv6PacketTooBig)
	icmp6TimeExceeded = uint8(header.ICMPv6TimeExceeded)
	icmp6ParamProblem = uint8(header.ICMPv6ParamProblem)
	icmp6EchoRequest  = uint8(header.ICMPv6EchoRequest)
	icmp6EchoReply    = uint8(header.ICMPv6EchoReply)
)

// IPv6 extension headers the decoder walks over (RFC 8200 section 4 and the
// IANA "IPv6 Extension Header Types" registry). ESP (50) and No Next Header
// (59) end the walk: what follows them cannot be read.
const (
	ext6HopByHop  = 0
	ext6Routing   = 43
	ext6Fragment  = 44
	ext6AH        = 51
	ext6DestOpts  = 60
	ext6Mobility  = 135
	ext6HIP       = 139
	ext6Shim6     = 140
	ext6Exp1      = 253
	ext6Exp2      = 254
	ipv4HeaderMin = header.IPv4MinimumSize
	ipv6HeaderLen = header.IPv6MinimumSize
)

type fragKind uint8

const (
	fragNone  fragKind = iota // not a fragment (or an IPv6 atomic fragment)
	fragFirst                 // offset 0, more fragments follow: carries the L4 header
	fragLater                 // offset > 0: no L4 header, belongs to an earlier first fragment
)

// icmpClass says what an ICMP or ICMPv6 message is to the filter.
type icmpClass uint8

const (
	icmpOther       icmpClass = iota // informational, decided by policy, never tracked
	icmpEchoRequest                  // opens a flow keyed by the echo identifier
	icmpEchoReply                    // answers a flow keyed by the echo identifier
	icmpError                        // quotes a packet that this node sent: related to its flow
)

// packet is what the filter needs to know about one IP packet. All of it is
// read from the packet's own headers by decode; nothing is trusted.
type packet struct {
	version  uint8 // 4 or 6
	proto    uint8 // upper-layer protocol (after IPv6 extension headers)
	src, dst netip.Addr
	// sport/dport are the TCP/UDP ports. For ICMP echo request and reply,
	// sport holds the echo identifier and dport is 0.
	sport, dport uint16
	tcpFlags     uint8
	icmpType     uint8
	icmp         icmpClass

	frag      fragKind
	fragOff   uint16 // fragment offset in bytes
	fragID    uint32 // IPv4 Identification or IPv6 Fragment header Identification
	fragProto uint8  // protocol field that all fragments of the datagram share

	// inner is the quoted packet of an ICMP error, when it could be read
	// (hasInner). Only the flow-identifying fields are set.
	hasInner bool
	inner    innerPacket
}

type innerPacket struct {
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16 // as in packet: echo identifier in sport for ICMP echo
}

var (
	errTruncated  = errors.New("truncated packet")
	errVersion    = errors.New("not IPv4 or IPv6")
	errIPHeader   = errors.New("invalid IP header")
	errExtHeader  = errors.New("invalid IPv6 extension header")
	errL4Header   = errors.New("truncated or invalid transport header")
	errTinyOffset = errors.New("TCP fragment at offset 8 (RFC 1858)")
)

// decode reads b, one IP packet starting at its IP header, into p. Any
// packet whose headers are inconsistent with its length, or that is too short
// to carry the transport header its protocol field announces, is an error:
// the filter drops it as malformed. Header fields are read with gVisor's
// tcpip/header accessors after the bounds are checked here.
//
// Protocols other than TCP, UDP, ICMP and ICMPv6 decode without ports. Later
// fragments (offset > 0) decode without a transport header.
func decode(b []byte, p *packet) error {
	*p = packet{}
	if len(b) == 0 {
		return errTruncated
	}
	var payload []byte
	switch header.IPVersion(b) {
	case header.IPv4Version:
		h := header.IPv4(b)
		// IsValid checks len(b) >= 20, 20 <= IHL*4 <= TotalLength <= len(b).
		if !h.IsValid(len(b)) {
			return errIPHeader
		}
		tl := int(h.TotalLength())
		hl := int(h.HeaderLength())
		payload = b[hl:tl]
		p.version = 4
		p.proto = h.Protocol()
		p.src = netip.AddrFrom4([4]byte(h.SourceAddressSlice()))
		p.dst = netip.AddrFrom4([4]byte(h.DestinationAddressSlice()))
		p.setFrag(h.FragmentOffset(), h.More(), uint32(h.ID()), p.proto) // offset in bytes
	case header.IPv6Version:
		h := header.IPv6(b)
		// IsValid checks len(b) >= 40 and 40+PayloadLength <= len(b).
		if !h.IsValid(len(b)) {
			return errIPHeader
		}
		p.version = 6
		p.src = netip.AddrFrom16([16]byte(h.SourceAddressSlice()))
		p.dst = netip.AddrFrom16([16]byte(h.DestinationAddressSlice()))
		var err error
		p.proto, payload, err = walkIPv6(h.NextHeader(), b[ipv6HeaderLen:ipv6HeaderLen+int(h.PayloadLength())], p)
		if err != nil {
			return err
		}
	default:
		return errVersion
	}
	if p.frag == fragLater {
		// RFC 1858: a TCP fragment at offset 8 can only be an attempt to
		// rewrite the flags of a first fragment that was already passed.
		if p.fragProto == ProtoTCP && p.fragOff == 8 {
			return errTinyOffset
		}
		return nil
	}
	return decodeL4(payload, p)
}

// setFrag records that p is a fragment of datagram id (of protocol proto)
// at offset off (in bytes), with more fragments after it if more; offset 0
// without more is no fragment and records nothing.
func (p *packet) setFrag(off uint16, more bool, id uint32, proto uint8) {
	switch {
	case off > 0:
		p.frag = fragLater
	case more:
		p.frag = fragFirst
	default:
		return
	}
	p.fragID, p.fragProto, p.fragOff = id, proto, off
}

// skipExtHeader skips the IPv6 extension header at the start of pl, at
// least 8 bytes, whose length in units of unit bytes is its second byte
// plus extra. It returns the header's Next Header and what follows it.
func skipExtHeader(pl []byte, unit, extra int) (uint8, []byte, error) {
	if len(pl) < 8 {
		return 0, nil, errExtHeader
	}
	n := (int(pl[1]) + extra) * unit
	if len(pl) < n {
		return 0, nil, errExtHeader
	}
	return pl[0], pl[n:], nil
}

// walkIPv6 follows the extension header chain starting with next over pl
// (the IPv6 payload) and returns the upper-layer protocol and its bytes. It
// records fragmentation in p. Every length is checked against pl before it
// is used.
func walkIPv6(next uint8, pl []byte, p *packet) (uint8, []byte, error) {
	seenFrag := false
	for {
		switch next {
		case ext6HopByHop, ext6Routing, ext6DestOpts, ext6Mobility, ext6HIP, ext6Shim6, ext6Exp1, ext6Exp2:
			// Next Header, Hdr Ext Len in 8-octet units not counting the first 8.
			var err error
			if next, pl, err = skipExtHeader(pl, 8, 1); err != nil {
				return 0, nil, err
			}
		case ext6AH:
			// RFC 4302: Payload Len in 4-octet units, minus 2.
			var err error
			if next, pl, err = skipExtHeader(pl, 4, 2); err != nil {
				return 0, nil, err
			}
		case ext6Fragment:
			f := header.IPv6Fragment(pl)
			if !f.IsValid() {
				return 0, nil, errExtHeader
			}
			if seenFrag {
				// A second Fragment header: nothing legitimate sends this.
				return 0, nil, errExtHeader
			}
			seenFrag = true
			// Offset 0 without More is an atomic fragment (RFC 6946): an
			// ordinary packet as far as the filter is concerned.
			p.setFrag(f.FragmentOffset()*8, f.More(), f.ID(), f.NextHeader()) // offset in 8-octet units
			next, pl = f.NextHeader(), pl[header.IPv6FragmentHeaderSize:]
			if p.frag == fragLater {
				// The rest of the chain is in the first fragment.
				return next, nil, nil
			}
		default:
			return next, pl, nil
		}
	}
}

// decodeL4 reads the transport header in pl according to p.proto.
func decodeL4(pl []byte, p *packet) error {
	switch p.proto {
	case ProtoTCP:
		t := header.TCP(pl)
		if len(pl) < header.TCPMinimumSize {
			return errL4Header
		}
		if d := int(t.DataOffset()); d < header.TCPMinimumSize || d > len(pl) {
			return errL4Header
		}
		p.sport, p.dport = t.SourcePort(), t.DestinationPort()
		p.tcpFlags = uint8(t.Flags())
	case ProtoUDP:
		u := header.UDP(pl)
		if len(pl) < header.UDPMinimumSize {
			return errL4Header
		}
		if l := int(u.Length()); l < header.UDPMinimumSize || l > len(pl) {
			// A UDP length that disagrees with the IP length is dropped by
			// every stack; so is it here.
			if p.frag == fragNone {
				return errL4Header
			}
		}
		p.sport, p.dport = u.SourcePort(), u.DestinationPort()
	case ProtoICMP:
		return decodeICMP(4, pl, header.ICMPv4MinimumSize, p)
	case ProtoICMPv6:
		return decodeICMP(6, pl, header.ICMPv6ErrorHeaderSize, p)
	}
	return nil
}

// decodeICMP reads an ICMP (version 4) or ICMPv6 (6) message: its type,
// the identifier of an echo request or reply (in sport), and the packet
// an error quotes after its header of quoteAt bytes. Both versions' headers
// are at least 8 bytes, with the type at 0 and an echo's identifier at 4.
func decodeICMP(version uint8, pl []byte, quoteAt int, p *packet) error {
	if len(pl) < header.ICMPv4MinimumSize {
		return errL4Header
	}
	p.icmpType = pl[0]
	switch p.icmp = classifyICMP(version, p.icmpType); p.icmp {
	case icmpEchoRequest, icmpEchoReply:
		p.sport = header.ICMPv4(pl).Ident()
	case icmpError:
		p.hasInner = decodeInner(version, pl[quoteAt:], &p.inner)
	}
	return nil
}

// classifyICMP says what an ICMP (version 4) or ICMPv6 (6) message of type
// typ is to the filter.
func classifyICMP(version, typ uint8) icmpClass {
	if version == 4 {
		switch typ {
		case icmp4Echo:
			return icmpEchoRequest
		case icmp4EchoReply:
			return icmpEchoReply
		case icmp4DstUnreach, icmp4SrcQuench, icmp4TimeExceeded, icmp4ParamProblem:
			return icmpError
		}
		return icmpOther
	}
	switch typ {
	case icmp6EchoRequest:
		return icmpEchoRequest
	case icmp6EchoReply:
		return icmpEchoReply
	case icmp6DstUnreach, icmp6PacketTooBig, icmp6TimeExceeded, icmp6ParamProblem:
		return icmpError
	}
	return icmpOther
}

// decodeInner reads the packet quoted by an ICMP error: an IP header of the
// same version as the error plus at least the first 8 bytes of its transport
// header (RFC 792, RFC 4443 2.4(c)). The quoted header's length fields describe
// the original packet, not the quote, so they are not checked against b. It
// reports false when the quote does not identify a flow.
func decodeInner(version uint8, b []byte, in *innerPacket) bool {
	*in = innerPacket{}
	var pl []byte
	switch version {
	case 4:
		if len(b) < ipv4HeaderMin || header.IPVersion(b) != header.IPv4Version {
			return false
		}
		h := header.IPv4(b)
		hl := int(h.HeaderLength())
		if hl < ipv4HeaderMin || hl > len(b) || h.FragmentOffset() != 0 {
			return false
		}
		in.proto = h.Protocol()
		in.src = netip.AddrFrom4([4]byte(h.SourceAddressSlice()))
		in.dst = netip.AddrFrom4([4]byte(h.DestinationAddressSlice()))
		pl = b[hl:]
	case 6:
		if len(b) < ipv6HeaderLen || header.IPVersion(b) != header.IPv6Version {
			return false
		}
		h := header.IPv6(b)
		in.src = netip.AddrFrom16([16]byte(h.SourceAddressSlice()))
		in.dst = netip.AddrFrom16([16]byte(h.DestinationAddressSlice()))
		var scratch packet
		proto, rest, err := walkIPv6(h.NextHeader(), b[ipv6HeaderLen:], &scratch)
		if err != nil || scratch.frag == fragLater {
			return false
		}
		in.proto, pl = proto, rest
	default:
		return false
	}
	if len(pl) < 8 {
		return false
	}
	switch in.proto {
	case ProtoTCP, ProtoUDP:
		// Both start with source port, destination port.
		in.sport = uint16(pl[0])<<8 | uint16(pl[1])
		in.dport = uint16(pl[2])<<8 | uint16(pl[3])
	case ProtoICMP:
		if pl[0] != icmp4Echo && pl[0] != icmp4EchoReply {
			return false
		}
		in.sport = header.ICMPv4(pl).Ident()
	case ProtoICMPv6:
		if pl[0] != icmp6EchoRequest && pl[0] != icmp6EchoReply {
			return false
		}
		in.sport = header.ICMPv6(pl).Ident()
	default:
		// Other protocols are tracked without ports.
	}
	return true
}
