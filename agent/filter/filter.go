package filter

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/certmesh/certmesh/certs"
)

// Decider is the compiled access policy: may the peer src open a flow of
// protocol proto (an IP protocol number: ProtoTCP, ProtoUDP, ProtoICMP,
// ProtoICMPv6 or any other) towards dstPort at dst? dst is one of this
// node's addresses (Config.Local), or, for traffic this node routes, an
// address inside a prefix it serves (SetServed) that no peer holds; the
// filter drops every other destination before asking. dstPort is the TCP
// or UDP destination port and 0 for every other protocol (ICMP is decided
// by protocol alone). On accept, rule is the index of the accepting rule;
// on refusal it is -1 (default deny). policy.Node.DecideFunc is one.
//
// A Decider is called on the packet path, from several goroutines at once,
// once per new inbound flow (not per packet) and again for each tracked
// inbound flow after the regime changes. It must be safe for concurrent use,
// fast, and must not call back into the Device.
type Decider func(src *certs.Identity, dst netip.Addr, proto uint8, dstPort uint16) (accept bool, rule int)

// Peers maps a packet's source overlay address to the identity verified from
// the certificates of the peer that holds it.
//
// Lookup returns the identity whose certificate lists src (an IPv4 address
// in its 4-byte form, an IPv6 address in its 16-byte form), or false. The
// caller answers only for peers it has verified and configured; anything
// else is an unknown source.
//
// Why a lookup by source address is enough: the agent configures each
// WireGuard peer's AllowedIPs from its certificate and from nothing else,
// and wireguard-go drops every decrypted packet whose source address is not
// in the AllowedIPs of the peer whose key decrypted it (device/receive.go,
// "packet with disallowed source address"). So a packet that reaches the
// filter with source S was sent by the peer whose certificate holds S, and
// a peer cannot spoof another peer's address or an address outside its own
// certificate. wireguard-go does not tell the TUN device which peer sent a
// packet; when a caller can (another data plane), Device.WriteFrom checks
// the source against that peer's certificate as well.
//
// Lookup is called from several goroutines at once and must be safe for
// concurrent use and must not call back into the Device.
type Peers interface {
	Lookup(src netip.Addr) (*certs.Identity, bool)
}

// PeersFunc adapts a function to Peers.
type PeersFunc func(src netip.Addr) (*certs.Identity, bool)

// Lookup calls f.
func (f PeersFunc) Lookup(src netip.Addr) (*certs.Identity, bool) { return f(src) }

// Drop describes one dropped inbound packet, for Config.OnDrop. For a
// malformed packet the addresses may be invalid.
type Drop struct {
	Reason  DropReason
	Src     netip.Addr
	Dst     netip.Addr
	Proto   uint8
	DstPort uint16
}

// Config configures a Device. The zero value is usable: no policy (every
// inbound packet is dropped) until SetDecider, no peers until SetPeers.
type Config struct {
	// Decider is the initial policy; nil means none is held.
	Decider Decider
	// Peers is the initial peer view; nil means no peer is known.
	Peers Peers
	// Local are this node's own (overlay) addresses: packets to them are
	// local traffic. Packets to any other address are routed traffic,
	// accepted only inside a prefix given to SetServed; with neither, every
	// new inbound flow is dropped as "unserved-destination".
	Local []netip.Addr
	// MaxFlows bounds the connection-tracking table. Default 65536. When
	// it is full, expired entries go first, then the least recently seen.
	MaxFlows int
	// MaxFragments bounds the table of accepted fragmented datagrams.
	// Default 1024.
	MaxFragments int
	// Timeouts for tracked flows; zero fields take DefaultTimeouts.
	Timeouts Timeouts
	// SweepInterval is how often a background goroutine removes expired
	// flows. Default 30 s; negative disables it (expiry then happens only
	// lazily, on lookup and when a shard is full, and through Sweep).
	SweepInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnDrop, when set, is called synchronously for each dropped inbound
	// packet (for logging). It must be fast and must not call back into
	// the Device.
	OnDrop func(Drop)
}

// DefaultMaxFlows and DefaultMaxFragments are the bounds used when the Config
// leaves them zero.
const (
	DefaultMaxFlows      = 65536
	DefaultMaxFragments  = 1024
	DefaultSweepInterval = 30 * time.Second
)

// regime is the policy and the peer view in force, swapped as a whole. Every
// swap increments epoch; a tracked inbound-initiated flow decided under an
// older epoch is decided again at its next packet (or by Revalidate).
type regime struct {
	decide Decider
	peers  Peers
	served []netip.Prefix // SetServed's, never modified
	epoch  uint64
}

// Device is a tun.Device that filters what wireguard-go delivers to the
// operating system (Write: decrypted inbound packets) and tracks the flows
// that the operating system sends through it (Read: outbound packets, all
// passed). Every other method is the wrapped device's.
type Device struct {
	tun.Device

	reg    atomic.Pointer[regime]
	local  []netip.Addr // Config.Local, never modified
	ct     *table
	frags  *fragTable
	clock  func() time.Time // Config.Now, or nil for the real clock
	base   time.Time        // the clock's reading at Wrap; deadlines count from it
	onDrop func(Drop)
	ctr    counters

	bufPool   sync.Pool // *[][]byte
	stop      chan struct{}
	stopOnce  sync.Once
	sweeperWG sync.WaitGroup
}

// Wrap returns dev behind a filter configured by cfg. Give the result to
// wireguard-go (device.NewDevice) in place of dev. Close closes dev.
func Wrap(dev tun.Device, cfg Config) *Device {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.MaxFragments <= 0 {
		cfg.MaxFragments = DefaultMaxFragments
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	to := cfg.Timeouts.withDefaults()
	d := &Device{
		Device: dev,
		local:  unmapAll(cfg.Local),
		ct:     newTable(cfg.MaxFlows, to),
		frags:  newFragTable(cfg.MaxFragments, to.Fragment),
		clock:  cfg.Now, // nil: the monotonic clock alone (see now)
		onDrop: cfg.OnDrop,
		stop:   make(chan struct{}),
	}
	if d.clock != nil {
		d.base = d.clock()
	} else {
		d.base = time.Now()
	}
	d.reg.Store(&regime{decide: cfg.Decider, peers: cfg.Peers, epoch: 1})
	if cfg.SweepInterval > 0 {
		d.sweeperWG.Add(1)
		go d.sweeper(cfg.SweepInterval)
	}
	return d
}

func (d *Device) sweeper(every time.Duration) {
	defer d.sweeperWG.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.Sweep()
		}
	}
}

// now is the time in nanoseconds since Wrap. The real clock is read through
// its monotonic reading only: cheaper than time.Now on the packet path, and
// immune to wall-clock steps.
func (d *Device) now() int64 {
	if d.clock == nil {
		return int64(time.Since(d.base))
	}
	return int64(d.clock().Sub(d.base))
}

// Sweep removes expired flows and fragment records now, and returns how
// many flows it removed.
func (d *Device) Sweep() int {
	now := d.now()
	d.frags.sweep(now)
	return d.ct.sweep(now)
}

// Close stops the sweeper and closes the wrapped device.
func (d *Device) Close() error {
	d.stopOnce.Do(func() { close(d.stop) })
	d.sweeperWG.Wait()
	return d.Device.Close()
}

// swap installs a regime derived from the current one with a new epoch.
func (d *Device) swap(change func(r *regime)) *regime {
	for {
		old := d.reg.Load()
		n := *old
		change(&n)
		n.epoch = old.epoch + 1
		if d.reg.CompareAndSwap(old, &n) {
			return &n
		}
	}
}

// SetDecider installs a new policy; nil means no valid policy is held, and
// then every inbound packet is dropped (reason "no-policy"), replies to
// flows this node opened included: the agent must drop all inbound mesh
// traffic while it holds no valid policy. Outbound packets still pass and
// are still tracked.
//
// The swap is atomic: packets already being filtered finish under the old
// policy, later ones see the new one. Tracked flows are not dropped by the
// swap itself. A flow a peer opened is decided again under the new policy
// at its next packet and dropped then if refused; call Revalidate to do
// that for all of them at once. Flows this node opened are kept.
func (d *Device) SetDecider(dec Decider) {
	d.swap(func(r *regime) { r.decide = dec })
}

// SetServed installs the prefixes this node routes for its peers: a subnet
// router's LANs, an exit node's 0.0.0.0/0 and ::/0. Give it only prefixes
// the node's own verified machine certificate lists in its routes
// extension and that it is set up to forward; nil or empty serves none
// (the default). A packet to an address inside one of them, not this
// node's own (Config.Local) and held by no peer, is routed traffic: the
// Decider judges it by that destination address, and its flow is tracked
// like a local one, so replies pass. A packet to any other address that is
// not local is dropped as "unserved-destination".
//
// The swap has the same effect on tracked flows as SetDecider: a routed
// flow a peer opened is decided again at its next packet (Revalidate does
// it at once), so a prefix no longer served cuts its flows.
func (d *Device) SetServed(prefixes []netip.Prefix) {
	served := make([]netip.Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		if p.IsValid() { // an IPv4-mapped prefix matches no packet (certificates carry none)
			served = append(served, p.Masked())
		}
	}
	d.swap(func(r *regime) { r.served = served })
}

// SetPeers installs a new peer view, with the same effect on tracked flows
// as SetDecider. When a peer's identity changes behind an unchanged Peers
// (its user logs in, its certificate is renewed with other groups), call
// Revalidate.
func (d *Device) SetPeers(p Peers) {
	d.swap(func(r *regime) { r.peers = p })
}

// Revalidate decides again, under the current policy and peer view, every
// tracked flow that a peer opened, and drops those now refused (their next
// packets are dropped and counted as "denied"; this node's own packets on
// them do not reopen them). Flows this node opened stay. Flows still allowed
// are not interrupted. It returns the number of flows dropped.
//
// Call it after SetDecider or SetPeers, and whenever a peer's identity
// changes (a user logs in or out, a certificate expires or is renewed).
// Without it, the same happens lazily, flow by flow, at each flow's next
// packet (after SetDecider or SetPeers; a change behind an unchanged Peers
// needs Revalidate).
func (d *Device) Revalidate() int {
	reg := d.swap(func(*regime) {})
	now := d.now()
	dropped := 0
	var flows []remoteFlow
	for i := range d.ct.shards {
		flows = d.ct.collectRemote(i, reg.epoch, now, flows[:0])
		for j := range flows {
			f := &flows[j]
			accept, rule := d.decideKey(reg, &f.key)
			if d.ct.settle(f, reg.epoch, accept, rule, now) {
				dropped++
			}
		}
	}
	return dropped
}

// decideKey asks reg about an inbound-initiated flow.
func (d *Device) decideKey(reg *regime, k *flowKey) (bool, int) {
	if reg.decide == nil || reg.peers == nil {
		return false, -1
	}
	id, ok := reg.peers.Lookup(k.remote)
	if !ok || id == nil || !d.deliverable(reg, k.local) {
		return false, -1
	}
	var port uint16
	if k.proto == ProtoTCP || k.proto == ProtoUDP {
		port = k.lport
	}
	return reg.decide(id, k.local, k.proto, port)
}

// Read reads outbound packets from the wrapped device, records the flows
// they open, and returns them all.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.Device.Read(bufs, sizes, offset)
	if n > 0 {
		d.outbound(bufs, sizes, offset, n)
	}
	return n, err
}

func (d *Device) outbound(bufs [][]byte, sizes []int, offset, n int) {
	n = min(n, len(bufs), len(sizes))
	now := d.now()
	var (
		p      packet
		last   flowKey
		cached bool
	)
	for i := range n {
		b, sz := bufs[i], sizes[i]
		if sz <= 0 || offset < 0 || offset > len(b) || sz > len(b)-offset {
			continue
		}
		if decode(b[offset:offset+sz], &p) != nil || p.frag == fragLater || !trackable(&p) {
			continue
		}
		k := outboundKey(&p)
		if cached && k == last && sameAsPrevious(&p) {
			// The previous packet of this batch was on the same flow and
			// already did what this one would (same clock reading).
			continue
		}
		d.ct.outbound(&k, &p, now)
		last, cached = k, true
	}
	d.ctr.outbound.Add(uint64(n))
}

// Write filters decrypted inbound packets and writes the accepted ones, in
// order, to the wrapped device in one call (none if all are dropped). It
// returns len(bufs) and nil when that write succeeds (dropped packets count
// as consumed), otherwise what the wrapped device returned. wireguard-go only
// looks at the error.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	return d.WriteFrom(nil, bufs, offset)
}

// WriteFrom is Write for a caller that knows which peer sent bufs (wireguard-go
// does not; see Peers). When sender is not nil, a packet whose source address
// is not in sender's certificate is dropped ("spoofed-source"), and sender,
// not Peers, is the identity the policy sees.
func (d *Device) WriteFrom(sender *certs.Identity, bufs [][]byte, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	reg := d.reg.Load()
	now := d.now()
	kp, _ := d.bufPool.Get().(*[][]byte)
	if kp == nil {
		kp = new([][]byte)
	}
	keep := (*kp)[:0]
	var t tally
	for _, b := range bufs {
		if d.inbound(reg, sender, b, offset, now, &t) {
			keep = append(keep, b)
		}
	}
	d.ctr.add(&t)
	n, err := len(bufs), error(nil)
	if len(keep) > 0 {
		var w int
		w, err = d.Device.Write(keep, offset)
		if err != nil {
			n = w
		}
	}
	clear(keep) // do not keep wireguard-go's buffers alive
	*kp = keep[:0]
	d.bufPool.Put(kp)
	return n, err
}

// inbound decides one received packet and reports whether it is accepted.
func (d *Device) inbound(reg *regime, sender *certs.Identity, b []byte, offset int, now int64, t *tally) bool {
	var p packet
	if reg.decide == nil {
		return d.drop(t, DropNoPolicy, nil)
	}
	if offset < 0 || offset > len(b) || decode(b[offset:], &p) != nil {
		return d.drop(t, DropMalformed, nil)
	}
	if sender != nil && !sender.HasAddress(p.src) {
		return d.drop(t, DropSpoofedSource, &p)
	}
	if p.frag == fragLater {
		if d.frags.has(fragKeyOf(&p), now) {
			t.related++
			return true
		}
		return d.drop(t, DropFragment, &p)
	}
	if p.icmp == icmpError && p.hasInner && p.inner.src == p.dst {
		k := relatedKey(&p.inner)
		if d.ct.related(&k, now) {
			t.related++
			d.acceptedFirstFragment(&p, now)
			return true
		}
		// Not about a flow this node has: an ordinary ICMP message.
	}
	var k flowKey
	if trackable(&p) {
		k = inboundKey(&p)
		if t.cached && k == t.last && p.frag == fragNone && sameAsPrevious(&p) {
			// Same flow as the previous packet of this batch, which was
			// accepted as established: the table has nothing to learn.
			t.established++
			return true
		}
		t.cached = false
		if d.ct.inbound(&k, &p, reg.epoch, now) == inEstablished {
			t.established++
			t.last, t.cached = k, true
			d.acceptedFirstFragment(&p, now)
			return true
		}
	}
	var id *certs.Identity
	if sender != nil {
		id = sender
	} else if reg.peers != nil {
		id, _ = reg.peers.Lookup(p.src)
	}
	if id == nil || !d.deliverable(reg, p.dst) {
		if trackable(&p) {
			d.ct.commit(&k, &p, reg.epoch, false, -1, now)
		}
		if id == nil {
			return d.drop(t, DropUnknownSource, &p)
		}
		return d.drop(t, DropUnservedDestination, &p)
	}
	var port uint16
	if p.proto == ProtoTCP || p.proto == ProtoUDP {
		port = p.dport
	}
	accept, rule := reg.decide(id, p.dst, p.proto, port)
	if trackable(&p) {
		d.ct.commit(&k, &p, reg.epoch, accept, rule, now)
	}
	if !accept {
		return d.drop(t, DropDenied, &p)
	}
	d.ctr.rule(rule)
	d.acceptedFirstFragment(&p, now)
	return true
}

// sameAsPrevious reports whether p changes nothing in a flow's entry that the
// previous packet of the same flow, in the same batch, did not already
// change: no TCP SYN, FIN or RST, and not an ICMP echo request (which may
// start a new flow).
func sameAsPrevious(p *packet) bool {
	return p.tcpFlags&(tcpSYN|tcpFIN|tcpRST) == 0 && p.icmp != icmpEchoRequest
}

func (d *Device) acceptedFirstFragment(p *packet, now int64) {
	if p.frag == fragFirst {
		d.frags.add(fragKeyOf(p), now)
	}
}

func (d *Device) drop(t *tally, r DropReason, p *packet) bool {
	t.drops[r.index()]++
	if d.onDrop != nil {
		ev := Drop{Reason: r}
		if p != nil {
			ev.Src, ev.Dst, ev.Proto = p.src, p.dst, p.proto
			if p.proto == ProtoTCP || p.proto == ProtoUDP {
				ev.DstPort = p.dport
			}
		}
		d.onDrop(ev)
	}
	return false
}
