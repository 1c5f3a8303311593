package path

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
)

// Relay is one of this agent's relay allocations (agent/relayc implements
// it with a TURN client). Datagrams that arrive through it are handed to
// the function AttachRelay returns.
type Relay interface {
	// RelayedAddr is this agent's relayed transport address (its relay
	// candidate).
	RelayedAddr() netip.AddrPort
	// WriteTo sends one datagram from the allocation to a peer's address.
	WriteTo(ctx context.Context, b []byte, to netip.AddrPort) error
	// Permit lets datagrams from these peer addresses in (TURN
	// CreatePermission).
	Permit(ctx context.Context, addrs []netip.Addr) error
}

const (
	// relayQueue bounds the relayed WireGuard packets waiting for
	// wireguard-go; past it they are dropped, as a full socket would.
	relayQueue = 2 * conn.IdealBatchSize
	// relayBufSize holds any datagram a relay delivers over a 1500-byte
	// path; larger ones get a buffer of their own.
	relayBufSize = 2048
)

// relayPacket is one relayed WireGuard datagram waiting for wireguard-go.
type relayPacket struct {
	buf  *[]byte
	n    int
	from Route
}

// AttachRelay makes r relay allocation id (replacing any earlier one with
// that id) and returns the function the relay client calls with each
// datagram it receives through the allocation, and the address it came
// from. That function copies what it keeps; it does not block.
func (b *Bind) AttachRelay(id RelayID, r Relay) (deliver func(p []byte, from netip.AddrPort), err error) {
	if id == 0 {
		return nil, fmt.Errorf("attaching relay: relay number 0 means none")
	}
	b.mu.Lock()
	b.relays[id] = r
	b.mu.Unlock()
	return func(p []byte, from netip.AddrPort) { b.deliver(id, p, from) }, nil
}

// DetachRelay forgets relay allocation id; packets to it fail from now on.
func (b *Bind) DetachRelay(id RelayID) {
	b.mu.Lock()
	delete(b.relays, id)
	b.mu.Unlock()
}

// Relays returns the attached relay allocations.
func (b *Bind) Relays() map[RelayID]Relay {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[RelayID]Relay, len(b.relays))
	for id, r := range b.relays {
		out[id] = r
	}
	return out
}

func (b *Bind) relayFor(id RelayID) (Relay, context.Context, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.relays[id]
	if r == nil {
		return nil, nil, fmt.Errorf("relay %d is not attached", id)
	}
	if b.sess == nil {
		return nil, nil, net.ErrClosed
	}
	return r, b.sess.ctx, nil
}

// relayEndpointFor returns the one endpoint of route r, so that relayed
// packets cost wireguard-go no allocation each.
func (b *Bind) relayEndpointFor(r Route) *relayEndpoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ep, ok := b.eps[r]; ok {
		return ep
	}
	if len(b.eps) >= maxRelayEndpoints {
		clear(b.eps)
	}
	ep := &relayEndpoint{r: r}
	b.eps[r] = ep
	return ep
}

// deliver takes one datagram from relay id: WireGuard is queued for the
// relay receive function, a probe goes to the prober, the rest is dropped.
func (b *Bind) deliver(id RelayID, p []byte, from netip.AddrPort) {
	route := Route{Relay: id, Addr: unmap(from)}
	switch classify(p) {
	case classWireGuard:
	case classProbe:
		b.cnt.probes.Add(1)
		if h := b.h.Load(); h != nil {
			h.h.handleProbe(p, route)
		}
		return
	case classSTUN:
		b.cnt.stun.Add(1) // not ours: STUN goes to the servers directly
		return
	default:
		b.cnt.unknown.Add(1)
		return
	}
	b.mu.Lock()
	s := b.sess
	b.mu.Unlock()
	if s == nil {
		b.cnt.relayDropped.Add(1)
		return
	}
	var buf *[]byte
	if len(p) <= relayBufSize {
		buf = b.bufs.Get().(*[]byte)
	} else {
		big := make([]byte, len(p))
		buf = &big
	}
	pk := relayPacket{buf: buf, n: copy(*buf, p), from: route}
	select {
	case s.in <- pk:
	default:
		b.putBuf(buf)
		b.cnt.relayDropped.Add(1)
	}
}

func (b *Bind) putBuf(buf *[]byte) {
	if cap(*buf) == relayBufSize {
		b.bufs.Put(buf)
	}
}

// relayReceive is the receive function of relayed WireGuard packets: it
// waits for one, then takes as many more as are queued, up to the batch.
func (b *Bind) relayReceive(s *session) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		var pk relayPacket
		select {
		case pk = <-s.in:
		case <-s.done:
			return 0, net.ErrClosed
		}
		n := 0
		for {
			sizes[n] = copy(bufs[n], (*pk.buf)[:pk.n])
			eps[n] = b.relayEndpointFor(pk.from)
			b.putBuf(pk.buf)
			n++
			if n == len(bufs) {
				return n, nil
			}
			select {
			case pk = <-s.in:
			default:
				return n, nil
			}
		}
	}
}
