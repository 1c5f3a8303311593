package path

import (
	"encoding/binary"
	"sync/atomic"
)

// class is the kind of a datagram on the WireGuard socket.
type class uint8

const (
	classUnknown   class = iota
	classWireGuard       // message type 1..4, little-endian, three zero bytes
	classSTUN            // RFC 8489: first two bits 00, magic cookie at 4..8
	classProbe           // certmesh path probe: probeMagic
)

// stunMagicCookie is RFC 8489's fixed value at bytes 4..8 of every message.
const stunMagicCookie = 0x2112A442

// stunHeaderSize is the size of a STUN message header.
const stunHeaderSize = 20

// classify tells the three kinds of datagram apart by their first bytes.
// The classes cannot overlap: WireGuard's first byte is 1..4 followed by
// three zeros, a probe's first byte is ≥ 0x80, and STUN needs a first byte
// < 0x40 and the cookie where a WireGuard message has its sender index (a
// STUN-looking WireGuard message is still WireGuard: its type is checked
// first). TURN ChannelData (first byte 0x40..0x7F) is none of them.
func classify(p []byte) class {
	if len(p) < 4 {
		return classUnknown
	}
	if p[0] >= 1 && p[0] <= 4 && p[1] == 0 && p[2] == 0 && p[3] == 0 {
		return classWireGuard
	}
	if p[0] == probeMagic[0] && p[1] == probeMagic[1] && p[2] == probeMagic[2] && p[3] == probeMagic[3] {
		return classProbe
	}
	if len(p) >= stunHeaderSize && p[0]&0xC0 == 0 && binary.BigEndian.Uint32(p[4:8]) == stunMagicCookie {
		return classSTUN
	}
	return classUnknown
}

// Counters count the datagrams the path layer took off the socket (or off
// a relay) instead of handing them to WireGuard.
type Counters struct {
	STUN         uint64 // STUN messages (answers to our Binding requests or not)
	Probes       uint64 // path probes, before authentication
	Unknown      uint64 // neither WireGuard, STUN nor a probe: dropped
	RelayDropped uint64 // relayed WireGuard packets dropped: queue full or bind closed
}

type counters struct {
	stun, probes, unknown, relayDropped atomic.Uint64
}

func (c *counters) snapshot() Counters {
	return Counters{STUN: c.stun.Load(), Probes: c.probes.Load(), Unknown: c.unknown.Load(), RelayDropped: c.relayDropped.Load()}
}
