package relayc

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"

	"github.com/certmesh/certmesh/internal/pionlog"
)

// Transport is how an agent reaches a relay.
type Transport string

const (
	// UDP is TURN over UDP (the relay's STUN/TURN port).
	UDP Transport = "udp"
	// TLS is TURN over TLS on TCP, for networks that block UDP. The relay's
	// certificate is verified against the mesh's pinned roots (TLSConfig).
	TLS Transport = "tls"
)

// maxDatagram is the largest message read from a relay: a 64 KiB UDP
// datagram.
const maxDatagram = 64 << 10

// dataIndication is the STUN message type of a TURN Data indication
// (method 0x007, class indication).
const dataIndication = 0x0017

// handler receives the relayed data a link reads.
type handler interface {
	channelData(ch uint16, b []byte)
	data(from netip.AddrPort, b []byte)
}

// link is one socket to one relay: a UDP socket talking to its TURN port,
// or a TLS connection carrying STUN framing (RFC 6062 §4 / RFC 8656 §6.2).
// pion/turn's Client runs the STUN transactions (retransmission, matching
// responses); link's own read loop demultiplexes, so relayed data reaches
// the handler without a copy or a goroutine hop.
type link struct {
	kind   Transport
	server netip.AddrPort // the relay as dialled (UDP: the only source accepted)
	pc     net.PacketConn
	udp    *net.UDPConn // nil over TLS
	tc     *turn.Client
	to     net.Addr // destination of transactions
	log    *slog.Logger

	h       atomic.Pointer[handler]
	dropped atomic.Uint64 // datagrams from a source other than the relay, or unparsable

	done      chan struct{}
	closeOnce sync.Once
	errMu     sync.Mutex
	err       error
}

// dial opens a link to a relay at addr (host:port) over kind, verifying a
// TLS relay with tlsConf.
func dial(ctx context.Context, kind Transport, addr string, tlsConf *tls.Config, log *slog.Logger) (*link, error) {
	if log == nil {
		log = slog.Default()
	}
	l := &link{kind: kind, log: log, done: make(chan struct{})}
	rto := 200 * time.Millisecond
	switch kind {
	case UDP:
		ap, err := Resolve(ctx, addr)
		if err != nil {
			return nil, err
		}
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			return nil, fmt.Errorf("open a UDP socket for relay %s: %w", addr, err)
		}
		l.server, l.pc, l.udp, l.to = ap, c, c, udpAddr(ap)
	case TLS:
		if tlsConf == nil {
			return nil, fmt.Errorf("relay %s over TLS: no TLS configuration to verify it", addr)
		}
		d := tls.Dialer{Config: tlsConf}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("connect to relay %s over TLS: %w", addr, err)
		}
		l.server = c.RemoteAddr().(*net.TCPAddr).AddrPort()
		l.pc, l.to = turn.NewSTUNConn(c), c.RemoteAddr()
		rto = time.Second // TCP retransmits itself; this only bounds a lost answer
	default:
		return nil, fmt.Errorf("relay transport %q: want udp or tls", kind)
	}
	tc, err := turn.NewClient(&turn.ClientConfig{Conn: l.pc, RTO: rto, LoggerFactory: pionlog.Factory{Log: log}, Software: "certmesh"})
	if err != nil {
		_ = l.pc.Close()
		return nil, fmt.Errorf("TURN client for relay %s: %w", addr, err)
	}
	l.tc = tc
	go l.readLoop()
	return l, nil
}

// Resolve turns host:port into one address (IP literals without a lookup;
// a name to its first address).
func Resolve(ctx context.Context, addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", addr, err)
	}
	p, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: port: %w", addr, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %q: %w", addr, err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(p)), nil
}

func (l *link) readLoop() {
	buf := make([]byte, maxDatagram)
	for {
		var n int
		var err error
		if l.udp != nil {
			var from netip.AddrPort
			n, from, err = l.udp.ReadFromUDPAddrPort(buf)
			if err == nil && (from.Addr().Unmap() != l.server.Addr() || from.Port() != l.server.Port()) {
				l.dropped.Add(1) // only the relay talks to this socket
				continue
			}
		} else {
			n, _, err = l.pc.ReadFrom(buf)
		}
		if err != nil {
			l.fail(fmt.Errorf("read from relay %s: %w", l.server, err))
			return
		}
		l.dispatch(buf[:n])
	}
}

func (l *link) dispatch(b []byte) {
	h := l.h.Load()
	switch {
	case isChannelData(b):
		ch, payload, err := parseChannelData(b)
		if err != nil || h == nil {
			l.dropped.Add(1)
			return
		}
		(*h).channelData(ch, payload)
	case stun.IsMessage(b) && binary.BigEndian.Uint16(b) == dataIndication:
		m := &stun.Message{Raw: b}
		if err := m.Decode(); err != nil || h == nil {
			l.dropped.Add(1)
			return
		}
		from, payload, err := parseDataIndication(m)
		if err != nil {
			l.dropped.Add(1)
			return
		}
		(*h).data(from, payload)
	case stun.IsMessage(b):
		if _, err := l.tc.HandleInbound(b, l.to); err != nil {
			l.dropped.Add(1)
		}
	default:
		l.dropped.Add(1)
	}
}

// transact runs one STUN transaction and returns the answer (success or
// error response).
func (l *link) transact(ctx context.Context, m *stun.Message) (*stun.Message, error) {
	type answer struct {
		m   *stun.Message
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		r, err := l.tc.PerformTransaction(m, l.to, false)
		ch <- answer{r.Msg, err}
	}()
	select {
	case a := <-ch:
		if a.err != nil {
			return nil, fmt.Errorf("relay %s over %s: %w", l.server, l.kind, a.err)
		}
		return a.m, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("relay %s over %s: %w", l.server, l.kind, ctx.Err())
	case <-l.done:
		return nil, l.Err()
	}
}

// Ping sends a STUN Binding request to the relay and returns the round trip
// time and this socket's address as the relay saw it.
func (l *link) ping(ctx context.Context) (time.Duration, netip.AddrPort, error) {
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	start := time.Now()
	res, err := l.transact(ctx, m)
	if err != nil {
		return 0, netip.AddrPort{}, fmt.Errorf("STUN Binding: %w", err)
	}
	rtt := time.Since(start)
	if res.Type != stun.BindingSuccess {
		return 0, netip.AddrPort{}, responseError("Binding", res)
	}
	mapped, err := getAddr(res, stun.AttrXORMappedAddress)
	if err != nil {
		return 0, netip.AddrPort{}, fmt.Errorf("STUN Binding answer: %w", err)
	}
	return rtt, mapped, nil
}

// write sends one raw TURN message to the relay.
func (l *link) write(b []byte) error {
	_, err := l.pc.WriteTo(b, l.to)
	return err
}

func (l *link) fail(err error) {
	l.errMu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.errMu.Unlock()
	l.close()
}

// Err is why the link ended (nil while it is up).
func (l *link) Err() error {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return l.err
}

func (l *link) close() {
	l.closeOnce.Do(func() {
		l.errMu.Lock()
		if l.err == nil {
			l.err = errors.New("relay link closed")
		}
		l.errMu.Unlock()
		close(l.done)
		l.tc.Close()
		_ = l.pc.Close()
	})
}
