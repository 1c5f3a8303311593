package relayc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"
)

// TURN encodings (RFC 8656) that pion/stun has attribute numbers for but no
// codec: REQUESTED-TRANSPORT, LIFETIME, CHANNEL-NUMBER, DATA, and the
// ChannelData framing.

const (
	protoUDP = 17 // REQUESTED-TRANSPORT value for UDP (RFC 8656 §18.13)

	minChannel = 0x4000 // channel numbers (RFC 8656 §12)
	maxChannel = 0x4FFF

	channelHeader = 4
)

// requestedTransportUDP is the REQUESTED-TRANSPORT attribute for UDP.
type requestedTransportUDP struct{}

func (requestedTransportUDP) AddTo(m *stun.Message) error {
	m.Add(stun.AttrRequestedTransport, []byte{protoUDP, 0, 0, 0})
	return nil
}

// lifetime is the LIFETIME attribute: seconds, 32 bits.
type lifetime time.Duration

func (l lifetime) AddTo(m *stun.Message) error {
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], uint32(time.Duration(l)/time.Second))
	m.Add(stun.AttrLifetime, v[:])
	return nil
}

func getLifetime(m *stun.Message) (time.Duration, error) {
	v, err := m.Get(stun.AttrLifetime)
	if err != nil {
		return 0, fmt.Errorf("LIFETIME: %w", err)
	}
	if len(v) != 4 {
		return 0, fmt.Errorf("LIFETIME of %d bytes, want 4", len(v))
	}
	return time.Duration(binary.BigEndian.Uint32(v)) * time.Second, nil
}

// channelNumber is the CHANNEL-NUMBER attribute.
type channelNumber uint16

func (c channelNumber) AddTo(m *stun.Message) error {
	m.Add(stun.AttrChannelNumber, []byte{byte(c >> 8), byte(c), 0, 0})
	return nil
}

// peerAddr is one XOR-PEER-ADDRESS attribute.
type peerAddr netip.AddrPort

func (p peerAddr) AddTo(m *stun.Message) error {
	a := netip.AddrPort(p)
	return stun.XORMappedAddress{IP: a.Addr().AsSlice(), Port: int(a.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
}

// getAddr reads an XOR address attribute (XOR-RELAYED-ADDRESS,
// XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS) as a netip.AddrPort.
func getAddr(m *stun.Message, t stun.AttrType) (netip.AddrPort, error) {
	var x stun.XORMappedAddress
	if err := x.GetFromAs(m, t); err != nil {
		return netip.AddrPort{}, fmt.Errorf("%s: %w", t, err)
	}
	ip, ok := netip.AddrFromSlice(x.IP)
	if !ok || x.Port <= 0 || x.Port > 0xFFFF {
		return netip.AddrPort{}, fmt.Errorf("%s: bad address %v:%d", t, x.IP, x.Port)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(x.Port)), nil
}

// errorCode returns the ERROR-CODE of an error response (0 if none).
func errorCode(m *stun.Message) stun.ErrorCode {
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		return 0
	}
	return ec.Code
}

// responseError describes a TURN error response.
func responseError(what string, m *stun.Message) error {
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		return fmt.Errorf("%s: %s without ERROR-CODE", what, m.Type)
	}
	return &RelayError{Op: what, Code: int(ec.Code), Reason: string(ec.Reason)}
}

// RelayError is an error response from a relay.
type RelayError struct {
	Op     string // the TURN request, e.g. "Allocate"
	Code   int    // ERROR-CODE, e.g. 401
	Reason string // its reason phrase
}

func (e *RelayError) Error() string {
	return fmt.Sprintf("%s refused by the relay: %d %s", e.Op, e.Code, e.Reason)
}

// IsChannelData reports whether b starts like a TURN ChannelData message
// (first two bits 01).
func isChannelData(b []byte) bool { return len(b) >= channelHeader && b[0]&0xC0 == 0x40 }

// parseChannelData returns the channel number and payload of a ChannelData
// message, without copying.
func parseChannelData(b []byte) (uint16, []byte, error) {
	if !isChannelData(b) {
		return 0, nil, errors.New("not ChannelData")
	}
	ch := binary.BigEndian.Uint16(b)
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n > len(b)-channelHeader {
		return 0, nil, fmt.Errorf("ChannelData length %d exceeds the %d bytes received", n, len(b)-channelHeader)
	}
	if ch < minChannel || ch > maxChannel {
		return 0, nil, fmt.Errorf("ChannelData on channel %#x outside %#x..%#x", ch, minChannel, maxChannel)
	}
	return ch, b[channelHeader : channelHeader+n], nil
}

// parseDataIndication returns the peer and payload of a Data indication.
func parseDataIndication(m *stun.Message) (netip.AddrPort, []byte, error) {
	from, err := getAddr(m, stun.AttrXORPeerAddress)
	if err != nil {
		return netip.AddrPort{}, nil, fmt.Errorf("Data indication: %w", err)
	}
	data, err := m.Get(stun.AttrData)
	if err != nil {
		return netip.AddrPort{}, nil, fmt.Errorf("Data indication: DATA: %w", err)
	}
	return from, data, nil
}

func udpAddr(a netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(a) }
