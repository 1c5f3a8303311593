package filter

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Timeouts are the idle times after which a tracked flow is forgotten. Each
// packet of the flow, in either direction, restarts its timer. A zero field
// takes its default.
type Timeouts struct {
	// TCPNew: a SYN was seen but no reply yet. Default 2 min (a Linux
	// connect gives up after about 127 s of SYN retries).
	TCPNew time.Duration
	// TCPEstablished: the connection has seen traffic both ways. Default
	// 2 h 10 min: longer than Linux's default keepalive time (2 h), so a
	// connection with keepalives on never loses its entry, and an idle
	// connection this node opened still accepts the peer speaking first.
	TCPEstablished time.Duration
	// TCPClosing: a FIN was seen. Default 2 min (TIME_WAIT is 60 s).
	TCPClosing time.Duration
	// TCPClosed: a RST was seen. Default 10 s.
	TCPClosed time.Duration
	// UDP: default 60 s.
	UDP time.Duration
	// ICMP: echo request/reply identifiers. Default 30 s.
	ICMP time.Duration
	// Other: protocols other than TCP, UDP and ICMP, tracked by address
	// pair and protocol. Default 60 s.
	Other time.Duration
	// Fragment: how long the later fragments of an accepted first fragment
	// are let through. Default 30 s (Linux's ipfrag_time).
	Fragment time.Duration
}

// DefaultTimeouts are the timeouts used for zero fields of Config.Timeouts.
var DefaultTimeouts = Timeouts{
	TCPNew:         2 * time.Minute,
	TCPEstablished: 2*time.Hour + 10*time.Minute,
	TCPClosing:     2 * time.Minute,
	TCPClosed:      10 * time.Second,
	UDP:            60 * time.Second,
	ICMP:           30 * time.Second,
	Other:          60 * time.Second,
	Fragment:       30 * time.Second,
}

func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts
	set := func(dst *time.Duration, v time.Duration) {
		if v > 0 {
			*dst = v
		}
	}
	set(&d.TCPNew, t.TCPNew)
	set(&d.TCPEstablished, t.TCPEstablished)
	set(&d.TCPClosing, t.TCPClosing)
	set(&d.TCPClosed, t.TCPClosed)
	set(&d.UDP, t.UDP)
	set(&d.ICMP, t.ICMP)
	set(&d.Other, t.Other)
	set(&d.Fragment, t.Fragment)
	return d
}

// origin says which side opened a flow.
type origin uint8

const (
	originLocal  origin = iota + 1 // this node sent the first packet (outbound)
	originRemote                   // a peer sent the first packet and the policy accepted it
)

// ctState is a flow's state. UDP, ICMP and other protocols only use stOpen.
type ctState uint8

const (
	stNew         ctState = iota // TCP: SYN seen, no reply yet
	stEstablished                // TCP: traffic seen both ways (or picked up mid-stream)
	stClosing                    // TCP: FIN seen
	stClosed                     // TCP: RST seen
	stOpen                       // any non-TCP flow
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
	_, _ = rand.Read(b[:])
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

// timeout is how long an entry in state st of protocol proto lives idle.
func (t *table) timeout(proto uint8, st ctState) int64 {
	var d time.Duration
	switch proto {
	case ProtoTCP:
		switch st {
		case stNew:
			d = t.to.TCPNew
		case stEstablished:
			d = t.to.TCPEstablished
		case stClosing:
			d = t.to.TCPClosing
		default:
			d = t.to.TCPClosed
		}
	case ProtoUDP:
		d = t.to.UDP
	case ProtoICMP, ProtoICMPv6:
		d = t.to.ICMP
	default:
		d = t.to.Other
	}
	return int64(d)
}

// tombstoneTimeout is how long a revoked entry outlives the last packet this
// node sends on it.
func (t *table) tombstoneTimeout(proto uint8) int64 {
	if proto == ProtoTCP {
		return int64(t.to.TCPClosing)
	}
	return t.timeout(proto, stOpen)
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

// sweep removes every expired entry. Lazy expiry on lookup and insertion
// keeps the table correct without it; sweep gives the memory back sooner.
func (t *table) sweep(now int64) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for e := s.head.next; e != &s.head; {
			next := e.next
			if e.deadline <= now {
				t.remove(s, e)
				n++
			}
			e = next
		}
		s.mu.Unlock()
	}
	t.expired.Add(uint64(n))
	return n
}

// isPureSYN reports a TCP packet that opens a connection.
func isPureSYN(flags uint8) bool { return flags&(tcpSYN|tcpACK|tcpRST) == tcpSYN }

// advance moves a flow's state for a packet sent by the side from,
// and restarts its timer.
func (t *table) advance(e *entry, p *packet, from origin, now int64) {
	if e.key.proto == ProtoTCP {
		f := p.tcpFlags
		switch {
		case f&tcpRST != 0:
			e.state = stClosed
		case f&tcpFIN != 0:
			if e.state != stClosed {
				e.state = stClosing
			}
		case isPureSYN(f):
			if e.state == stClosing || e.state == stClosed {
				// The same 5-tuple reused by a new connection.
				e.state = stNew
			}
		case e.state == stNew && from != e.origin:
			e.state = stEstablished
		}
	} else {
		e.state = stOpen
	}
	e.deadline = now + t.timeout(e.key.proto, e.state)
}

// initialState is the state of a new flow opened by p.
func initialState(p *packet) ctState {
	if p.proto != ProtoTCP {
		return stOpen
	}
	switch f := p.tcpFlags; {
	case isPureSYN(f):
		return stNew
	case f&tcpFIN != 0:
		return stClosing
	default:
		return stEstablished // picked up mid-stream
	}
}

// opensOutbound reports whether p, sent by this node, starts a flow that
// the peer may answer: a TCP SYN, any UDP datagram, an ICMP echo request,
// any packet of another protocol. A mid-stream TCP segment or an ICMP echo
// reply does not: otherwise this node's answers on a flow that the policy
// just refused would reopen it as a flow this node started.
func opensOutbound(p *packet) bool {
	switch p.proto {
	case ProtoTCP:
		return isPureSYN(p.tcpFlags)
	case ProtoICMP, ProtoICMPv6:
		return p.icmp == icmpEchoRequest
	default:
		return true
	}
}

// trackable reports whether p belongs to a flow the table can key.
func trackable(p *packet) bool {
	switch p.proto {
	case ProtoICMP, ProtoICMPv6:
		return p.icmp == icmpEchoRequest || p.icmp == icmpEchoReply
	default:
		return true
	}
}

// opensInbound reports whether p, received, is the start of a flow (so
// that it must not ride on a flow this node opened earlier with the same
// 5-tuple once that flow is past its handshake).
func opensInbound(p *packet) bool {
	switch p.proto {
	case ProtoTCP:
		return isPureSYN(p.tcpFlags)
	case ProtoICMP, ProtoICMPv6:
		return p.icmp == icmpEchoRequest
	}
	return false
}

// outboundKey and inboundKey build the flow key of a packet sent or received.
func outboundKey(p *packet) flowKey {
	k := flowKey{local: p.src, remote: p.dst, proto: p.proto}
	switch p.proto {
	case ProtoTCP, ProtoUDP:
		k.lport, k.rport = p.sport, p.dport
	case ProtoICMP, ProtoICMPv6:
		k.lport = p.sport
	}
	return k
}

func inboundKey(p *packet) flowKey {
	k := flowKey{local: p.dst, remote: p.src, proto: p.proto}
	switch p.proto {
	case ProtoTCP, ProtoUDP:
		k.lport, k.rport = p.dport, p.sport
	case ProtoICMP, ProtoICMPv6:
		k.lport = p.sport
	}
	return k
}

// relatedKey is the key of the flow an ICMP error is about: the quoted
// packet was sent by this node.
func relatedKey(in *innerPacket) flowKey {
	k := flowKey{local: in.src, remote: in.dst, proto: in.proto}
	switch in.proto {
	case ProtoTCP, ProtoUDP:
		k.lport, k.rport = in.sport, in.dport
	case ProtoICMP, ProtoICMPv6:
		k.lport = in.sport
	}
	return k
}

// outbound records a packet this node sends.
// k is outboundKey(p); p is trackable.
func (t *table) outbound(k *flowKey, p *packet, now int64) {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := t.get(s, k, now)
	switch {
	case e == nil:
		if !opensOutbound(p) {
			return
		}
		if e = t.insert(s, k, now); e == nil {
			return
		}
		t.reset(e, originLocal, p, now)
	case e.revoked:
		if p.proto == ProtoTCP && isPureSYN(p.tcpFlags) {
			// A new connection this node opens on the same 5-tuple.
			t.reset(e, originLocal, p, now)
		} else {
			e.deadline = now + t.tombstoneTimeout(e.key.proto)
		}
	case e.origin == originRemote && p.proto == ProtoTCP && isPureSYN(p.tcpFlags) && e.state != stNew:
		t.reset(e, originLocal, p, now)
	default:
		t.advance(e, p, originLocal, now)
	}
	s.touch(e)
}

// reset makes e a fresh flow opened from side o by p.
func (t *table) reset(e *entry, o origin, p *packet, now int64) {
	e.origin, e.revoked, e.epoch, e.rule = o, false, 0, -1
	e.state = initialState(p)
	e.deadline = now + t.timeout(e.key.proto, e.state)
}

// inVerdict is what the table says about a received packet.
type inVerdict uint8

const (
	inEstablished inVerdict = iota // part of a tracked flow: accept
	inDecide                       // no (usable) flow: ask the policy
)

// inbound looks up a received packet's flow. A flow opened by a peer that
// was last decided under an older regime than epoch is not trusted: the
// caller decides again and reports with commit.
func (t *table) inbound(k *flowKey, p *packet, epoch uint64, now int64) inVerdict {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := t.get(s, k, now)
	if e == nil || e.revoked {
		return inDecide
	}
	if opensInbound(p) {
		switch {
		case e.origin == originLocal && e.state != stNew && e.state != stOpen:
			// A peer opening a connection towards a port this node used
			// for an earlier, finished connection: a new flow.
			return inDecide
		case e.origin == originLocal && p.proto != ProtoTCP:
			// An echo request reusing the identifier of our own echo.
			return inDecide
		}
	}
	if e.origin == originRemote && e.epoch < epoch {
		return inDecide
	}
	t.advance(e, p, originRemote, now)
	s.touch(e)
	return inEstablished
}

// commit records the policy's decision on a received packet that inbound
// sent to the policy. An accepted packet opens (or refreshes) an
// inbound-initiated flow, except for packets that do not start one (a RST,
// an unsolicited echo reply). A refused packet revokes the inbound-initiated
// flow it belonged to, if any, leaving a tombstone so that this node's own
// packets on that flow do not reopen it.
func (t *table) commit(k *flowKey, p *packet, epoch uint64, accept bool, rule int, now int64) {
	track := accept && !(p.proto == ProtoTCP && p.tcpFlags&tcpRST != 0) &&
		!((p.proto == ProtoICMP || p.proto == ProtoICMPv6) && p.icmp != icmpEchoRequest)
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := t.get(s, k, now)
	if e != nil && e.origin == originRemote && !e.revoked && e.epoch > epoch {
		// Decided meanwhile under a newer regime: that decision stands.
		return
	}
	if !accept {
		if e != nil && e.origin == originRemote && !e.revoked {
			e.revoked = true
			e.deadline = now + t.tombstoneTimeout(e.key.proto)
			t.revoked.Add(1)
		}
		return
	}
	if e != nil && !e.revoked && e.origin == originRemote {
		// Re-decided under a newer regime: still allowed.
		e.epoch, e.rule = epoch, int32(rule)
		t.advance(e, p, originRemote, now)
		s.touch(e)
		return
	}
	if e != nil && !e.revoked && e.origin == originLocal && !opensInbound(p) {
		// A flow this node opened appeared meanwhile.
		t.advance(e, p, originRemote, now)
		s.touch(e)
		return
	}
	if !track {
		return
	}
	if e == nil {
		if e = t.insert(s, k, now); e == nil {
			return
		}
	} else {
		s.touch(e)
	}
	t.reset(e, originRemote, p, now)
	e.epoch, e.rule = epoch, int32(rule)
}

// related reports whether k names a live flow (an ICMP error about it is
// then let through).
func (t *table) related(k *flowKey, now int64) bool {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := t.get(s, k, now)
	return e != nil && !e.revoked
}

// remoteFlow is an inbound-initiated flow handed to Revalidate.
type remoteFlow struct {
	key   flowKey
	e     *entry
	epoch uint64
}

// collectRemote appends the live, unrevoked inbound-initiated flows of
// shard i decided before epoch.
func (t *table) collectRemote(i int, epoch uint64, now int64, out []remoteFlow) []remoteFlow {
	s := &t.shards[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := s.head.next; e != &s.head; e = e.next {
		if e.origin == originRemote && !e.revoked && e.epoch < epoch && e.deadline > now {
			out = append(out, remoteFlow{key: e.key, e: e, epoch: e.epoch})
		}
	}
	return out
}

// settle applies Revalidate's decision on f, unless the entry changed
// meanwhile. It reports whether the flow was revoked.
func (t *table) settle(f *remoteFlow, epoch uint64, accept bool, rule int, now int64) bool {
	s := t.shard(&f.key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[f.key]
	if e != f.e || e.origin != originRemote || e.revoked || e.epoch != f.epoch {
		return false
	}
	if accept {
		e.epoch, e.rule = epoch, int32(rule)
		return false
	}
	e.revoked = true
	e.deadline = now + t.tombstoneTimeout(e.key.proto)
	t.revoked.Add(1)
	return true
}

// fragKey names the fragments of one datagram.
type fragKey struct {
	src, dst netip.Addr
	id       uint32
	proto    uint8
}

func fragKeyOf(p *packet) fragKey {
	return fragKey{src: p.src, dst: p.dst, id: p.fragID, proto: p.fragProto}
}

// fragTable remembers the datagrams whose first fragment was accepted, so
// that their later fragments (which carry no ports) are let through too.
// Fragmentation inside the tunnel is rare, so one lock suffices; the table
// is bounded like the flow table.
type fragTable struct {
	mu  sync.Mutex
	m   map[fragKey]int64
	max int
	ttl int64
}

func newFragTable(max int, ttl time.Duration) *fragTable {
	return &fragTable{m: make(map[fragKey]int64), max: max, ttl: int64(ttl)}
}

func (f *fragTable) add(k fragKey, now int64) {
	if f.max <= 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[k]; !ok && len(f.m) >= f.max {
		for kk, d := range f.m {
			if d <= now {
				delete(f.m, kk)
			}
		}
		for kk := range f.m {
			if len(f.m) < f.max {
				break
			}
			delete(f.m, kk) // arbitrary victim: the map's random order
		}
	}
	f.m[k] = now + f.ttl
}

func (f *fragTable) has(k fragKey, now int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.m[k]
	if ok && d <= now {
		delete(f.m, k)
		return false
	}
	return ok
}

func (f *fragTable) sweep(now int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, d := range f.m {
		if d <= now {
			delete(f.m, k)
		}
	}
}
