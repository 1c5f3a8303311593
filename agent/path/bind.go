package path

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// Bind is the conn.Bind of a WireGuard device whose socket the path layer
// shares: it wraps the device's own bind (conn.NewDefaultBind, StdNetBind
// on Linux), keeps its batched receive functions, UDP GSO/GRO and its send
// path for WireGuard unchanged, and takes STUN and path probes off the
// socket before wireguard-go sees them. It adds one receive function for
// WireGuard packets that arrived through a relay allocation.
//
// Make one with NewBind, hand Wrap to wgdev (Config.WrapBind), then give
// the Bind to a Manager. A Bind serves one device.
type Bind struct {
	log   *slog.Logger
	inner conn.Bind
	h     atomic.Pointer[handlerBox]
	cnt   counters
	bufs  sync.Pool   // *[]byte of relayBufSize, for relayed packets
	inits initiations // handshake initiations sent lately (initiation.go)

	mu     sync.Mutex
	relays map[RelayID]Relay
	sess   *session                         // nil while closed
	eps    map[Route]*relayEndpoint         // relay endpoints handed to wireguard-go
	direct map[netip.AddrPort]conn.Endpoint // inner endpoints for our own sends
}

// handler takes the datagrams that are not WireGuard. It must not keep b
// after it returns: b is the socket's receive buffer.
type handler interface {
	handleSTUN(b []byte, from netip.AddrPort)
	handleProbe(b []byte, from Route)
}

type handlerBox struct{ h handler }

// session is what lives from Open to Close.
type session struct {
	in     chan relayPacket // relayed WireGuard packets, for relayReceive
	done   chan struct{}    // closed by Close
	ctx    context.Context  // ends at Close: bounds relay writes
	cancel context.CancelFunc
}

// Bounds of the endpoint caches: past them a cache starts again, empty.
const (
	maxRelayEndpoints  = 1024
	maxDirectEndpoints = 1024
)

var _ conn.Bind = (*Bind)(nil)

// NewBind returns a Bind that is not yet wrapped around a device's bind.
func NewBind(log *slog.Logger) *Bind {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bind{log: log, relays: map[RelayID]Relay{}, eps: map[Route]*relayEndpoint{},
		direct: map[netip.AddrPort]conn.Endpoint{}}
	b.bufs.New = func() any { s := make([]byte, relayBufSize); return &s }
	return b
}

// Wrap makes b the bind around inner and returns b: wgdev.Config.WrapBind.
func (b *Bind) Wrap(inner conn.Bind) conn.Bind {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inner = inner
	return b
}

func (b *Bind) setHandler(h handler) { b.h.Store(&handlerBox{h}) }

// Counters returns how many datagrams the Bind kept from WireGuard.
func (b *Bind) Counters() Counters { return b.cnt.snapshot() }

// Open opens the inner bind and wraps its receive functions with the
// demultiplexer; the last receive function returns relayed packets.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inner == nil {
		return nil, 0, errors.New("path: Bind.Open before Wrap")
	}
	if b.sess != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	fns, actual, err := b.inner.Open(port)
	if err != nil {
		return nil, 0, err
	}
	out := make([]conn.ReceiveFunc, 0, len(fns)+1)
	for _, fn := range fns {
		out = append(out, b.demuxReceive(fn))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{in: make(chan relayPacket, relayQueue), done: make(chan struct{}), ctx: ctx, cancel: cancel}
	b.sess = s
	out = append(out, b.relayReceive(s))
	return out, actual, nil
}

// Close closes the inner bind and ends the relay receive function.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sess != nil {
		b.sess.cancel()
		close(b.sess.done)
		b.sess = nil
	}
	if b.inner == nil {
		return nil
	}
	return b.inner.Close()
}

// SetMark sets the inner bind's socket mark.
func (b *Bind) SetMark(mark uint32) error { return b.inner.SetMark(mark) }

// BatchSize is the inner bind's: wireguard-go's batches stay as large.
func (b *Bind) BatchSize() int { return b.inner.BatchSize() }

// ParseEndpoint accepts the inner bind's endpoints and the relay form
// "relay:<n>:<addr:port>".
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	if len(s) > len(relayPrefix) && s[:len(relayPrefix)] == relayPrefix {
		r, err := ParseRoute(s)
		if err != nil {
			return nil, err
		}
		return b.relayEndpointFor(r), nil
	}
	return b.inner.ParseEndpoint(s)
}

// Send hands WireGuard's packets to the inner bind unchanged, or to the
// relay allocation a relay endpoint names.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.inits.note(bufs, time.Now())
	re, ok := ep.(*relayEndpoint)
	if !ok {
		return b.inner.Send(bufs, ep)
	}
	r, ctx, err := b.relayFor(re.r.Relay)
	if err != nil {
		return err
	}
	for _, p := range bufs {
		if err := r.WriteTo(ctx, p, re.r.Addr); err != nil {
			return fmt.Errorf("sending through relay %d to %s: %w", re.r.Relay, re.r.Addr, err)
		}
	}
	return nil
}

// sendTo sends one datagram of the path layer's own (STUN, probe) along r.
func (b *Bind) sendTo(p []byte, r Route) error {
	if r.Relay != 0 {
		rl, ctx, err := b.relayFor(r.Relay)
		if err != nil {
			return err
		}
		return rl.WriteTo(ctx, p, r.Addr)
	}
	ep, err := b.directEndpoint(r.Addr)
	if err != nil {
		return err
	}
	return b.inner.Send([][]byte{p}, ep)
}

func (b *Bind) directEndpoint(ap netip.AddrPort) (conn.Endpoint, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inner == nil {
		return nil, errors.New("path: bind not wrapped")
	}
	if ep, ok := b.direct[ap]; ok {
		return ep, nil
	}
	ep, err := b.inner.ParseEndpoint(ap.String())
	if err != nil {
		return nil, err
	}
	if len(b.direct) >= maxDirectEndpoints {
		clear(b.direct)
	}
	b.direct[ap] = ep
	return ep, nil
}

// addrOf is the unmapped source address of a received datagram.
func addrOf(ep conn.Endpoint) netip.AddrPort {
	if s, ok := ep.(*conn.StdNetEndpoint); ok {
		return unmap(s.AddrPort)
	}
	ap, _ := netip.ParseAddrPort(ep.DstToString())
	return unmap(ap)
}
