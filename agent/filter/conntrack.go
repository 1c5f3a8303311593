package filter

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
)

// flowKey names a flow from this node's point of view: local is this node's
// address, remote the peer's, whichever side sent the packet. For ICMP echo,
// lport is the echo identifier and rport is 0; for protocols without ports
// both are 0.
type flowKey struct {
	local, remote netip.Addr
	lport, rport  uint16
	proto         uint8
}

// outboundKey and inboundKey build the flow key of a packet sent or received.
func outboundKey(p *packet) flowKey { return keyOf(p.proto, p.src, p.dst, p.sport, p.dport, p.sport) }

func inboundKey(p *packet) flowKey { return keyOf(p.proto, p.dst, p.src, p.dport, p.sport, p.sport) }

// relatedKey is the key of the flow an ICMP error is about: the quoted
// packet was sent by this node.
func relatedKey(in *innerPacket) flowKey {
	return keyOf(in.proto, in.src, in.dst, in.sport, in.dport, in.sport)
}

// keyOf is the key of a flow of protocol proto between local (port lport)
// and remote (port rport); for ICMP echo, which has no ports, the echo
// identifier echoID stands in lport.
func keyOf(proto uint8, local, remote netip.Addr, lport, rport, echoID uint16) flowKey {
	k := flowKey{local: local, remote: remote, proto: proto}
	switch proto {
	case ProtoTCP, ProtoUDP:
		k.lport, k.rport = lport, rport
	case ProtoICMP, ProtoICMPv6:
		k.lport = echoID
	}
	return k
}

// entry is one tracked flow. All fields are guarded by the shard's mutex.
type entry struct {
	key      flowKey
	origin   origin
	state    ctState
	revoked  bool   // an inbound-initiated flow the current policy refuses (tombstone)
	epoch    uint64 // regime epoch of the last policy decision (originRemote only)
	rule     int32  // rule that accepted it (originRemote only)
	deadline int64  // unix nanoseconds after which the entry is dead
	prev     *entry // LRU list: prev is more recently used
	next     *entry
}

// shard is one lock's worth of the table: a map and an LRU list whose front
// (head.next) is the most recently seen flow.
type shard struct {
	mu   sync.Mutex
	m    map[flowKey]*entry
	head entry // sentinel
	max  int
	_    [64]byte // keep neighbouring shards' locks off one cache line
}

// table is the connection-tracking table: a fixed number of shards, each
// bounded, so that the whole never holds more than the configured maximum.
type table struct {
	shards  []shard
	mask    uint64
	seed    uint64
	to      Timeouts
	count   atomic.Int64
	evicted atomic.Uint64
	expired atomic.Uint64
	revoked atomic.Uint64
	max     int
}

// newTable makes a table for at most max entries. Shards hold at least 1024
// entries each (so small tables are a single LRU) and there are at most 64.
func newTable(max int, to Timeouts) *table {
	n := 1
	for n < 64 && max/(n*2) >= 1024 {
		n *= 2
	}
	t := &table{shards: make([]shard, n), mask: uint64(n - 1), to: to}
	per := max / n
	for i := range t.shards {
		s := &t.shards[i]
		s.m = make(map[flowKey]*entry)
		s.head.next, s.head.prev = &s.head, &s.head
		s.max = per
	}
	t.max = per * n
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it aborts the program instead)
	t.seed = binary.LittleEndian.Uint64(b[:])
	return t
}

func (t *table) shard(k *flowKey) *shard {
	if t.mask == 0 {
		return &t.shards[0]
	}
	l, r := k.local.As16(), k.remote.As16()
	h := t.seed
	h ^= binary.LittleEndian.Uint64(l[0:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(l[8:16]), 7)
	h ^= bits.RotateLeft64(binary.LittleEndian.Uint64(r[0:8]), 19) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(r[8:16]), 29)
	h ^= uint64(k.lport)<<40 | uint64(k.rport)<<16 | uint64(k.proto)
	// murmur3 finalizer
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return &t.shards[h&t.mask]
}

// The LRU list. Callers hold s.mu.

func (s *shard) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *shard) pushFront(e *entry) {
	e.prev, e.next = &s.head, s.head.next
	s.head.next.prev = e
	s.head.next = e
}

func (s *shard) touch(e *entry) {
	if s.head.next == e {
		return
	}
	s.unlink(e)
	s.pushFront(e)
}

func (t *table) remove(s *shard, e *entry) {
	delete(s.m, e.key)
	s.unlink(e)
	t.count.Add(-1)
}

// get returns the live entry for k, removing it if it has expired.
func (t *table) get(s *shard, k *flowKey, now int64) *entry {
	e := s.m[*k]
	if e != nil && e.deadline <= now {
		t.remove(s, e)
		t.expired.Add(1)
		return nil
	}
	return e
}

// insert adds a new entry for k, first making room: expired entries at the
// cold end of the LRU go first, then, if the shard is still full, the least
// recently seen flow is evicted. The table never grows past its bound.
func (t *table) insert(s *shard, k *flowKey, now int64) *entry {
	for len(s.m) > 0 {
		tail := s.head.prev
		if tail.deadline > now {
			break
		}
		t.remove(s, tail)
		t.expired.Add(1)
	}
	for len(s.m) >= s.max && len(s.m) > 0 {
		t.remove(s, s.head.prev)
		t.evicted.Add(1)
	}
	if s.max <= 0 {
		return nil
	}
	e := &entry{key: *k}
	s.m[*k] = e
	s.pushFront(e)
	t.count.Add(1)
	return e
}
