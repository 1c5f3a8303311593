package path

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// probeMagic starts every path probe. Its first byte is ≥ 0x80, so a probe
// is never taken for WireGuard (1..4), STUN (< 0x40) or TURN ChannelData
// (0x40..0x7F).
var probeMagic = [4]byte{0xCE, 'c', 'm', 0x01}

// probeKind says what a probe is.
type probeKind uint8

const (
	kindPing probeKind = 1
	kindPong probeKind = 2
)

func (k probeKind) String() string {
	switch k {
	case kindPing:
		return "ping"
	case kindPong:
		return "pong"
	}
	return fmt.Sprintf("probeKind(%d)", uint8(k))
}

// A probe is one fixed-size datagram (pings and pongs alike, so that a
// pong is no larger than the ping it answers):
//
//	0   4  magic
//	4   1  kind: 1 ping, 2 pong
//	5   8  sender ID: names the (sender, receiver) direction of a key pair
//	13 12  transaction ID: random in a ping, the ping's in its pong
//	25  8  sender's clock, Unix milliseconds, big-endian
//	33 18  pong: the address the ping came from (16-byte IPv6 form, port);
//	       ping: zero
//	51 16  MAC: HMAC-SHA256 of bytes 0..51 under the direction's key, truncated
const (
	probeIDSize  = 8
	probeTxSize  = 12
	probeMACSize = 16
	offKind      = 4
	offID        = 5
	offTx        = offID + probeIDSize
	offAt        = offTx + probeTxSize
	offSeen      = offAt + 8
	offMAC       = offSeen + 18
	probeSize    = offMAC + probeMACSize
)

type txID [probeTxSize]byte

// probe is a parsed (not yet authenticated) path probe.
type probe struct {
	kind probeKind
	id   [probeIDSize]byte
	tx   txID
	atMS int64          // sender's clock
	seen netip.AddrPort // pongs: where the ping came from
}

// Reasons a datagram is not a well-formed probe.
var (
	errProbeSize  = errors.New("probe: wrong size")
	errProbeMagic = errors.New("probe: wrong magic")
	errProbeKind  = errors.New("probe: unknown kind")
	errProbeSeen  = errors.New("probe: bad observed address")
)

// parseProbe checks a probe's form; it does not authenticate it (see
// verifyMAC). It reads only b, and keeps nothing of it.
func parseProbe(b []byte) (probe, error) {
	var p probe
	if len(b) != probeSize {
		return p, errProbeSize
	}
	if [4]byte(b[:4]) != probeMagic {
		return p, errProbeMagic
	}
	p.kind = probeKind(b[offKind])
	p.id = [probeIDSize]byte(b[offID:offTx])
	p.tx = txID(b[offTx:offAt])
	p.atMS = int64(binary.BigEndian.Uint64(b[offAt:offSeen]))
	seen := b[offSeen:offMAC]
	switch p.kind {
	case kindPing:
		if [18]byte(seen) != ([18]byte{}) {
			return p, errProbeSeen
		}
	case kindPong:
		ap := netip.AddrPortFrom(netip.AddrFrom16([16]byte(seen[:16])).Unmap(), binary.BigEndian.Uint16(seen[16:]))
		if !ap.Addr().IsValid() || ap.Port() == 0 || ap.Addr().IsUnspecified() {
			return p, errProbeSeen
		}
		p.seen = ap
	default:
		return p, errProbeKind
	}
	return p, nil
}

// marshal writes p, MACed with key, into a new datagram.
func (p probe) marshal(key *[32]byte) []byte {
	b := make([]byte, probeSize)
	copy(b, probeMagic[:])
	b[offKind] = byte(p.kind)
	copy(b[offID:], p.id[:])
	copy(b[offTx:], p.tx[:])
	binary.BigEndian.PutUint64(b[offAt:], uint64(p.atMS))
	if p.kind == kindPong {
		a16 := p.seen.Addr().As16()
		copy(b[offSeen:], a16[:])
		binary.BigEndian.PutUint16(b[offSeen+16:], p.seen.Port())
	}
	copy(b[offMAC:], probeMAC(key, b[:offMAC]))
	return b
}

func probeMAC(key *[32]byte, body []byte) []byte {
	m := hmac.New(sha256.New, key[:])
	m.Write(body)
	return m.Sum(nil)[:probeMACSize]
}

// verifyMAC reports whether b (a well-formed probe) carries key's MAC;
// the comparison is constant-time.
func verifyMAC(key *[32]byte, b []byte) bool {
	if len(b) != probeSize {
		return false
	}
	return hmac.Equal(probeMAC(key, b[:offMAC]), b[offMAC:])
}
