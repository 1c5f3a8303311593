package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/sockbuf"
	"github.com/certmesh/certmesh/internal/udpbatch"
)

const (
	// relayQueue bounds the datagrams read for one allocation and not yet
	// taken by pion's packet handler; past it, datagrams from another
	// allocation of this relay are dropped (as a full socket would) and
	// the socket's own wait in the kernel's buffer.
	relayQueue = 1024
	// bufSize holds any datagram pion relays (it reads at most 1,600
	// bytes, its inbound MTU); a longer one is cut there as before.
	bufSize = 2048
	// listenBufSize is the read buffer of a listening socket's batch:
	// longer than pion's inbound MTU, so that pion still sees (and drops)
	// a datagram too long for it.
	listenBufSize = 4096
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

func getBuf(n int) *[]byte {
	if n > bufSize {
		b := make([]byte, n)
		return &b
	}
	return bufPool.Get().(*[]byte)
}

func putBuf(b *[]byte) {
	if cap(*b) == bufSize {
		bufPool.Put(b)
	}
}

// listenConn is a TURN/STUN listening socket whose reads are batched
// (recvmmsg): pion's read loop takes the datagrams one at a time from the
// last batch.
type listenConn struct {
	*net.UDPConn
	b *udpbatch.Conn
}

func newListenConn(c *net.UDPConn) *listenConn {
	sockbuf.Set(c)
	return &listenConn{UDPConn: c, b: udpbatch.New(c, listenBufSize)}
}

// ReadFrom returns the next datagram; one longer than p fills p (pion
// drops a read as long as its buffer as truncated).
func (l *listenConn) ReadFrom(p []byte) (int, net.Addr, error) {
	d, from, trunc, err := l.b.Next()
	if err != nil {
		return 0, nil, err
	}
	n := copy(p, d)
	if trunc {
		n = len(p)
	}
	return n, from, nil
}

// relayPacket is a datagram waiting for an allocation's packet handler.
type relayPacket struct {
	buf  *[]byte
	n    int
	from netip.AddrPort
}

// relayConn is an allocation's relay socket. It relays nothing before the
// allocation has an owner (its credential's device and expiry), nothing
// once that credential expired (the first datagram after that closes it,
// which ends the allocation), and never to the relay host itself except
// to live allocations of this relay. A datagram to another allocation of
// this relay is handed to that allocation's socket in memory, as if it had
// come through the kernel from this one's relayed address.
type relayConn struct {
	*net.UDPConn
	r       *Relay
	port    uint16
	expires atomic.Int64 // unix nanoseconds; 0: no owner yet
	device  certs.DeviceID
	serial  string // the credential's certificate serial, hex ("" if not named)
	tuple   string
	once    sync.Once

	in       chan relayPacket // read from the socket, or from local allocations
	closed   chan struct{}    // closed by Close
	readDone chan struct{}    // closed when the socket's reader stopped
	readErr  error            // why (set before readDone is closed)
	dropped  atomic.Uint64    // local datagrams dropped, the queue full
	// lastFrom and lastAddr are the peer ReadFrom returned last (only
	// pion's packet handler reads).
	lastFrom netip.AddrPort
	lastAddr *net.UDPAddr
}

func newRelayConn(r *Relay, pc *net.UDPConn) *relayConn {
	return &relayConn{UDPConn: pc, r: r, port: uint16(pc.LocalAddr().(*net.UDPAddr).Port),
		in: make(chan relayPacket, relayQueue), closed: make(chan struct{}), readDone: make(chan struct{})}
}

func (c *relayConn) live() bool {
	e := c.expires.Load()
	return e != 0 && c.r.now().UnixNano() < e
}

// readSocket reads the socket in batches into the queue until it is
// closed. A datagram from the relayed IP must come from a live allocation.
func (c *relayConn) readSocket() {
	defer close(c.readDone)
	bc := udpbatch.New(c.UDPConn, bufSize)
	for {
		p, from, _, err := bc.Next()
		if err != nil {
			c.readErr = err
			return
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		ap := ua.AddrPort()
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if ap.Addr() == c.r.policy.relayIP && !c.r.allocs.live(ap.Port()) {
			continue
		}
		buf := getBuf(len(p))
		pk := relayPacket{buf: buf, n: copy(*buf, p), from: ap}
		select {
		case c.in <- pk:
		case <-c.closed:
			putBuf(buf)
			return
		}
	}
}

// deliverLocal queues a datagram another allocation of this relay sent to
// this one from its relayed address from; it does not block.
func (c *relayConn) deliverLocal(b []byte, from netip.AddrPort) {
	select {
	case <-c.closed:
		return
	default:
	}
	buf := getBuf(len(b))
	pk := relayPacket{buf: buf, n: copy(*buf, b), from: from}
	select {
	case c.in <- pk:
	default:
		putBuf(buf)
		c.dropped.Add(1)
	}
}

// ReadFrom returns the next datagram from a peer (pion's permission check
// follows).
func (c *relayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	var pk relayPacket
	select {
	case pk = <-c.in:
	case <-c.readDone:
		return 0, nil, c.readErr
	}
	if !c.live() {
		putBuf(pk.buf)
		_ = c.Close()
		return 0, nil, errExpired
	}
	n := copy(b, (*pk.buf)[:pk.n])
	putBuf(pk.buf)
	if pk.from != c.lastFrom || c.lastAddr == nil {
		// An allocation talks to a few peers: their addresses are not
		// made anew for every datagram (pion only compares them).
		c.lastFrom, c.lastAddr = pk.from, net.UDPAddrFromAddrPort(pk.from)
	}
	return n, c.lastAddr, nil
}

// WriteTo sends a client's datagram to a peer.
func (c *relayConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if !c.live() {
		_ = c.Close()
		return 0, errExpired
	}
	ua, ok := to.(*net.UDPAddr)
	if !ok {
		return 0, errRefusedPeer
	}
	dst := ua.AddrPort()
	ip := dst.Addr().Unmap()
	if !c.r.policy.permit(ip) {
		return 0, errRefusedPeer
	}
	if ip == c.r.policy.relayIP {
		peer := c.r.allocs.local(dst.Port())
		if peer == nil {
			return 0, errRefusedPeer
		}
		peer.deliverLocal(b, netip.AddrPortFrom(c.r.policy.relayIP, c.port))
		return len(b), nil
	}
	return c.UDPConn.WriteToUDPAddrPort(b, dst)
}

// Close closes the socket and forgets it.
func (c *relayConn) Close() error {
	var err error
	c.once.Do(func() {
		c.r.allocs.mu.Lock()
		delete(c.r.allocs.byPort, c.port)
		c.r.allocs.mu.Unlock()
		close(c.closed)
		err = c.UDPConn.Close()
	})
	return err
}
