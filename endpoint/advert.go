package endpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// Bounds and parameters of version 1.
const (
	// Version is the encoding version Sign writes and Parse reads.
	Version = 1
	// MaxCandidates bounds the candidates of one advertisement (the
	// coordinator's wire.MaxEndpoints is the same bound).
	MaxCandidates = 16
	// MaxSignatureSize bounds the signature: an ECDSA P-256 signature in
	// ASN.1 DER is at most 72 bytes.
	MaxSignatureSize = 72
	// MaxSize bounds a signed advertisement: the largest one (a 64-byte
	// device ID, MaxCandidates IPv6 candidates, the longest signature)
	// is 508 bytes.
	MaxSize = 512
	// MaxAge is the freshness bound: Verify refuses an advertisement
	// issued longer ago. It bounds how long a relayed copy of an old
	// advertisement (addresses the device has left) stays usable by a
	// receiver that has not seen a newer one.
	MaxAge = 15 * time.Minute
	// MaxSkew is how far ahead of the receiver's clock IssuedAt may be
	// (the agents' tolerated clock skew, agent.DefaultMaxClockSkew).
	MaxSkew = 5 * time.Minute
	// RefreshInterval is how often a device re-signs an unchanged list:
	// a receiver whose clock is MaxSkew ahead still finds it fresh.
	RefreshInterval = MaxAge - 2*MaxSkew
)

// Domain prefixes the signed payload: a device-key signature over an
// advertisement can never be taken for one over anything else.
const Domain = "certmesh endpoint advertisement v1\x00"

// Kind says how a device learned a candidate address.
type Kind uint8

// The candidate kinds.
const (
	Local     Kind = 1 // an address of one of the device's interfaces
	Reflexive Kind = 2 // its address as a STUN server saw it (outside its NATs)
	Relay     Kind = 3 // an address relayed to it by a TURN relay allocation
)

func (k Kind) valid() bool { return k >= Local && k <= Relay }

func (k Kind) String() string {
	switch k {
	case Local:
		return "local"
	case Reflexive:
		return "reflexive"
	case Relay:
		return "relay"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText writes the kind's name (for status JSON).
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Candidate is one address at which a device says it can be reached.
type Candidate struct {
	Kind Kind
	Addr netip.AddrPort
}

func (c Candidate) String() string { return c.Kind.String() + " " + c.Addr.String() }

// Advertisement is what a device signs about where it can be reached.
type Advertisement struct {
	DeviceID     certs.DeviceID
	WireGuardKey certs.WireGuardKey
	// Seq grows with every advertisement the device signs, across
	// restarts; receivers refuse one not above the last they accepted.
	Seq uint64
	// IssuedAt is when it was signed, to the millisecond.
	IssuedAt   time.Time
	Candidates []Candidate
}

// check refuses what no version-1 advertisement may say.
func (a *Advertisement) check() error {
	if _, err := certs.ParseDeviceID(string(a.DeviceID)); err != nil {
		return refuse(ReasonMalformed, "%v", err)
	}
	if a.WireGuardKey.IsZero() {
		return refuse(ReasonMalformed, "no WireGuard key")
	}
	if a.Seq == 0 {
		return refuse(ReasonMalformed, "sequence number 0 (they start at 1)")
	}
	if a.IssuedAt.UnixMilli() < 0 {
		return refuse(ReasonMalformed, "issued at %s, before 1970", a.IssuedAt.UTC().Format(time.RFC3339))
	}
	if len(a.Candidates) > MaxCandidates {
		return refuse(ReasonTooMany, "%d candidates, at most %d allowed", len(a.Candidates), MaxCandidates)
	}
	return checkCandidates(a.Candidates)
}

// checkCandidates refuses an invalid candidate (Check) and a candidate
// listed twice.
func checkCandidates(cs []Candidate) error {
	for i, c := range cs {
		if err := c.Check(); err != nil {
			return refuse(ReasonOf(err), "candidate %d: %v", i, errors.Unwrap(err))
		}
		for j := range i {
			if cs[j].Addr == c.Addr {
				return refuse(ReasonInvalidAddress, "candidate %d (%s): the address of candidate %d again", i, c, j)
			}
		}
	}
	return nil
}

// Check refuses a candidate of an unknown kind (malformed) or at an
// address no one can be reached at (invalid-address): no address or port,
// unspecified, multicast or broadcast, with a zone, IPv4-mapped IPv6.
// Which reachable addresses to use (loopback, the overlay's own ranges)
// is the receiver's policy, not this package's.
func (c Candidate) Check() error {
	if !c.Kind.valid() {
		return refuse(ReasonMalformed, "unknown kind %d", c.Kind)
	}
	a := c.Addr.Addr()
	switch {
	case !c.Addr.IsValid() || c.Addr.Port() == 0:
		return refuse(ReasonInvalidAddress, "%s: no address and port", c)
	case a.Zone() != "":
		return refuse(ReasonInvalidAddress, "%s: an address with a zone", c)
	case a.Is4In6():
		return refuse(ReasonInvalidAddress, "%s: an IPv4-mapped IPv6 address (write it as IPv4)", c)
	case a.IsUnspecified():
		return refuse(ReasonInvalidAddress, "%s: unspecified address", c)
	case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return refuse(ReasonInvalidAddress, "%s: multicast or broadcast address", c)
	}
	return nil
}

// payload encodes a checked advertisement (see the package documentation).
func (a *Advertisement) payload() []byte {
	b := make([]byte, 0, MaxSize)
	b = append(b, Version, byte(len(a.DeviceID)))
	b = append(b, a.DeviceID...)
	b = append(b, a.WireGuardKey[:]...)
	b = binary.BigEndian.AppendUint64(b, a.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(a.IssuedAt.UnixMilli()))
	b = append(b, byte(len(a.Candidates)))
	for _, c := range a.Candidates {
		b = append(b, byte(c.Kind))
		ip := c.Addr.Addr()
		if ip.Is4() {
			b = append(b, 4)
		} else {
			b = append(b, 6)
		}
		b = append(b, ip.AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, c.Addr.Port())
	}
	return b
}

// reader takes fields off the front of an encoding.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = refuse(ReasonMalformed, "truncated in the %s (%d bytes left, %d needed)", what, len(r.b), n)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) byte(what string) byte {
	if b := r.take(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) uint64(what string) uint64 {
	if b := r.take(8, what); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// parsed is a decoded signed advertisement: what it says, the payload
// its signature covers, and the signature.
type parsed struct {
	adv     Advertisement
	payload []byte
	sig     []byte
}

// parse decodes a signed advertisement. It checks the encoding and the
// bounds, not the signature nor the candidates' addresses (Verify does,
// in that order).
func parse(b []byte) (*parsed, error) {
	if len(b) == 0 {
		return nil, refuse(ReasonUnsigned, "no advertisement")
	}
	if len(b) > MaxSize {
		return nil, refuse(ReasonMalformed, "%d bytes, at most %d allowed", len(b), MaxSize)
	}
	r := &reader{b: b}
	if v := r.byte("version"); v != Version {
		return nil, refuse(ReasonMalformed, "version %d, want %d", v, Version)
	}
	var p parsed
	p.adv.DeviceID = certs.DeviceID(r.take(int(r.byte("device ID length")), "device ID"))
	copy(p.adv.WireGuardKey[:], r.take(len(p.adv.WireGuardKey), "WireGuard key"))
	p.adv.Seq = r.uint64("sequence number")
	ms := r.uint64("issue time")
	n := int(r.byte("candidate count"))
	if r.err == nil && n > MaxCandidates {
		return nil, refuse(ReasonTooMany, "%d candidates, at most %d allowed", n, MaxCandidates)
	}
	for i := 0; i < n && r.err == nil; i++ {
		c, err := r.candidate(i)
		if err != nil {
			return nil, err
		}
		p.adv.Candidates = append(p.adv.Candidates, c)
	}
	if r.err != nil {
		return nil, r.err
	}
	if ms > uint64(1<<63-1) {
		return nil, refuse(ReasonMalformed, "issue time %d ms out of range", ms)
	}
	p.adv.IssuedAt = time.UnixMilli(int64(ms)).UTC()
	p.payload = b[:len(b)-len(r.b)]
	if len(r.b) == 0 {
		return nil, refuse(ReasonUnsigned, "no signature after the payload")
	}
	sigLen := int(r.byte("signature length"))
	switch {
	case sigLen == 0:
		return nil, refuse(ReasonUnsigned, "empty signature")
	case sigLen > MaxSignatureSize:
		return nil, refuse(ReasonMalformed, "signature of %d bytes, at most %d allowed", sigLen, MaxSignatureSize)
	}
	p.sig = r.take(sigLen, "signature")
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, refuse(ReasonMalformed, "%d bytes after the signature", len(r.b))
	}
	if _, err := certs.ParseDeviceID(string(p.adv.DeviceID)); err != nil {
		return nil, refuse(ReasonMalformed, "%v", err)
	}
	if p.adv.Seq == 0 {
		return nil, refuse(ReasonMalformed, "sequence number 0 (they start at 1)")
	}
	return &p, nil
}

func (r *reader) candidate(i int) (Candidate, error) {
	kind := Kind(r.byte("candidate kind"))
	fam := r.byte("address family")
	if r.err != nil {
		return Candidate{}, r.err
	}
	if !kind.valid() {
		return Candidate{}, refuse(ReasonMalformed, "candidate %d: unknown kind %d", i, kind)
	}
	var size int
	switch fam {
	case 4:
		size = 4
	case 6:
		size = 16
	default:
		return Candidate{}, refuse(ReasonMalformed, "candidate %d: address family %d, want 4 or 6", i, fam)
	}
	raw := r.take(size, "address")
	port := r.take(2, "port")
	if r.err != nil {
		return Candidate{}, r.err
	}
	ip, _ := netip.AddrFromSlice(raw) // 4 or 16 bytes: always an address; a 16-byte IPv4-mapped one stays IPv6
	return Candidate{Kind: kind, Addr: netip.AddrPortFrom(ip, binary.BigEndian.Uint16(port))}, nil
}
