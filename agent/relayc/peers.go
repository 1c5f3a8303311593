package relayc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/pion/stun/v3"
)

// maxPermitsPerRequest bounds the XOR-PEER-ADDRESS attributes of one
// CreatePermission so the request stays well inside one datagram.
const maxPermitsPerRequest = 32

// peerTable is an allocation's permissions and channel bindings.
type peerTable struct {
	mu      sync.RWMutex
	permits map[netip.Addr]struct{}
	byPeer  map[netip.AddrPort]uint16 // bound channels
	byChan  map[uint16]netip.AddrPort
	binding map[netip.AddrPort]bool // ChannelBind in flight or refused
	next    uint16
}

func (p *peerTable) init() {
	p.permits = map[netip.Addr]struct{}{}
	p.byPeer = map[netip.AddrPort]uint16{}
	p.byChan = map[uint16]netip.AddrPort{}
	p.binding = map[netip.AddrPort]bool{}
	p.next = minChannel
}

func (p *peerTable) channel(to netip.AddrPort) (uint16, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ch, ok := p.byPeer[to]
	return ch, ok
}

func (p *peerTable) peerOf(ch uint16) (netip.AddrPort, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	to, ok := p.byChan[ch]
	return to, ok
}

// claim reserves a channel number for to, or reports false if a binding is
// already under way or the channels are used up.
func (p *peerTable) claim(to netip.AddrPort) (uint16, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.binding[to] || p.next > maxChannel {
		return 0, false
	}
	if _, ok := p.byPeer[to]; ok {
		return 0, false
	}
	p.binding[to] = true
	ch := p.next
	p.next++
	p.byChan[ch] = to // the relay may use the channel as soon as it answers
	return ch, true
}

func (p *peerTable) bound(to netip.AddrPort, ch uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.byPeer[to], p.byChan[ch] = ch, to
	p.permits[to.Addr()] = struct{}{} // a ChannelBind installs the permission too
}

func (p *peerTable) permitted() []netip.Addr {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]netip.Addr, 0, len(p.permits))
	for a := range p.permits {
		out = append(out, a)
	}
	return out
}

func (p *peerTable) channels() map[netip.AddrPort]uint16 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make(map[netip.AddrPort]uint16, len(p.byPeer))
	for to, ch := range p.byPeer {
		out[to] = ch
	}
	return out
}

// Permit lets datagrams from these peer addresses in (TURN
// CreatePermission); the permissions are renewed until the allocation ends.
func (a *Allocation) Permit(ctx context.Context, addrs []netip.Addr) error {
	for len(addrs) > 0 {
		n := min(len(addrs), maxPermitsPerRequest)
		if err := a.createPermission(ctx, addrs[:n]); err != nil {
			return err
		}
		a.peers.mu.Lock()
		for _, ip := range addrs[:n] {
			a.peers.permits[ip.Unmap()] = struct{}{}
		}
		a.peers.mu.Unlock()
		addrs = addrs[n:]
	}
	return nil
}

func (a *Allocation) createPermission(ctx context.Context, addrs []netip.Addr) error {
	attrs := make([]stun.Setter, 0, len(addrs))
	for _, ip := range addrs {
		if !ip.IsValid() {
			return errors.New("CreatePermission: invalid peer address")
		}
		attrs = append(attrs, peerAddr(netip.AddrPortFrom(ip.Unmap(), 1)))
	}
	if _, err := a.request(ctx, "CreatePermission", stun.MethodCreatePermission, attrs...); err != nil {
		return fmt.Errorf("permit %v at relay %s: %w", addrs, a.server, err)
	}
	return nil
}

// channelBind binds (or, when refreshing, re-binds) channel ch to to.
func (a *Allocation) channelBind(ctx context.Context, to netip.AddrPort, ch uint16) error {
	if _, err := a.request(ctx, "ChannelBind", stun.MethodChannelBind, channelNumber(ch), peerAddr(to)); err != nil {
		return fmt.Errorf("bind channel %#x to %s at relay %s: %w", ch, to, a.server, err)
	}
	return nil
}

// WriteTo sends one datagram from the allocation to to: as ChannelData once
// a channel is bound to to (4 bytes of overhead), until then as a Send
// indication while the binding is made in the background. The relay drops
// it unless to's address is permitted (Permit).
func (a *Allocation) WriteTo(ctx context.Context, b []byte, to netip.AddrPort) error {
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	if ch, ok := a.peers.channel(to); ok {
		return a.writeChannel(ch, b)
	}
	if ch, ok := a.peers.claim(to); ok {
		go a.bindNew(to, ch)
	}
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		peerAddr(to), rawData(b), stun.Fingerprint)
	if err != nil {
		return fmt.Errorf("Send indication to %s: %w", to, err)
	}
	if err := a.write(m.Raw); err != nil {
		return fmt.Errorf("send to %s through relay %s: %w", to, a.server, err)
	}
	return nil
}

func (a *Allocation) bindNew(to netip.AddrPort, ch uint16) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := a.channelBind(ctx, to, ch); err != nil {
		a.log.Debug("relay channel bind failed; sending by indications", "err", err)
		return // binding stays claimed: no retry storm; indications still work
	}
	a.peers.bound(to, ch)
}

// writeChannel frames b as ChannelData, padded to four bytes over TLS
// (RFC 8656 §12.5).
func (a *Allocation) writeChannel(ch uint16, b []byte) error {
	if len(b) > 0xFFFF {
		return fmt.Errorf("datagram of %d bytes too large for ChannelData", len(b))
	}
	n := channelHeader + len(b)
	if a.kind == TLS {
		n = (n + 3) &^ 3
	}
	bp := getBuf(n)
	defer putBuf(bp)
	buf := (*bp)[:n]
	binary.BigEndian.PutUint16(buf, ch)
	binary.BigEndian.PutUint16(buf[2:], uint16(len(b)))
	copy(buf[channelHeader:], b)
	clear(buf[channelHeader+len(b):])
	if err := a.write(buf); err != nil {
		return fmt.Errorf("send through relay %s: %w", a.server, err)
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func getBuf(n int) *[]byte {
	bp := bufPool.Get().(*[]byte)
	if cap(*bp) < n {
		*bp = make([]byte, 0, n)
	}
	return bp
}

func putBuf(bp *[]byte) { bufPool.Put(bp) }

// rawData is the DATA attribute.
type rawData []byte

func (d rawData) AddTo(m *stun.Message) error {
	m.Add(stun.AttrData, d)
	return nil
}

// channelData implements handler: relayed data on a bound channel.
func (a *Allocation) channelData(ch uint16, b []byte) {
	from, ok := a.peers.peerOf(ch)
	if !ok {
		a.dropped.Add(1)
		return
	}
	a.cfg.Receive(b, from)
}

// data implements handler: relayed data in a Data indication.
func (a *Allocation) data(from netip.AddrPort, b []byte) { a.cfg.Receive(b, from) }
