package relay

import (
	"net"
	"net/netip"
	"sync"

	"github.com/certmesh/certmesh/internal/udpbatch"
)

// Coalesced writes to clients. pion's packet handler of an allocation reads
// a datagram from a peer and writes it to the allocation's client as
// ChannelData, one system call each. The relay instead collects the
// ChannelData an allocation's handler writes to its client (outBatch) and
// sends them together when the handler has no datagram left to read
// (relayConn.ReadFrom) or the batch is full: over UDP in one sendmmsg,
// runs of one size as one GSO send; over TLS in one write (one TLS record
// per 16 KiB instead of one per datagram). Nothing waits longer than the
// handler takes to process what is queued already, and the order is kept:
// one handler writes all of its client's ChannelData.

const (
	outMaxDatagrams = 64
	outMaxBytes     = 64 << 10
)

var outPool = sync.Pool{New: func() any { b := make([]byte, 0, outMaxBytes+bufSize); return &b }}

// outBatch is the ChannelData waiting for one client.
type outBatch struct {
	mu    sync.Mutex
	buf   *[]byte // from outPool while anything waits
	sizes []int
	dgs   [][][]byte
	parts [][]byte
	send  func(ob *outBatch, frames []byte) error
	// UDP: the client and its listening socket.
	to net.Addr
	ub *udpbatch.Conn
	// TLS: the connection.
	conn net.Conn
}

// add queues one ChannelData message (copied), sending the batch when it
// is full.
func (ob *outBatch) add(p []byte) {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if ob.buf == nil {
		ob.buf = outPool.Get().(*[]byte)
	}
	*ob.buf = append(*ob.buf, p...)
	ob.sizes = append(ob.sizes, len(p))
	if len(ob.sizes) >= outMaxDatagrams || len(*ob.buf) >= outMaxBytes {
		ob.flushLocked()
	}
}

// flush sends what waits.
func (ob *outBatch) flush() {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	ob.flushLocked()
}

func (ob *outBatch) flushLocked() {
	if ob.buf == nil {
		return
	}
	_ = ob.send(ob, *ob.buf) // lost like a datagram the kernel refused
	*ob.buf = (*ob.buf)[:0]
	outPool.Put(ob.buf)
	ob.buf, ob.sizes = nil, ob.sizes[:0]
}

// sendUDP sends the batch's datagrams to the client, GSO where it fits.
func sendUDP(ob *outBatch, frames []byte) error {
	ob.parts = ob.parts[:0]
	ob.dgs = ob.dgs[:0]
	off := 0
	for _, n := range ob.sizes {
		ob.parts = append(ob.parts, frames[off:off+n])
		off += n
	}
	for i := range ob.parts {
		ob.dgs = append(ob.dgs, ob.parts[i:i+1])
	}
	err := ob.ub.Send(ob.to, ob.dgs)
	clear(ob.parts)
	clear(ob.dgs)
	return err
}

// sendTLS writes the batch's frames (pion padded each) at once.
func sendTLS(ob *outBatch, frames []byte) error {
	_, err := ob.conn.Write(frames)
	return err
}

// isChannelData reports whether p is a ChannelData message (first two
// bits 01), the only thing a packet handler writes that is batched.
func isChannelData(p []byte) bool { return len(p) >= 4 && p[0]&0xC0 == 0x40 }

// clientOut keeps the batches of a listening socket's (or the TLS
// listener's) clients, by client address.
type clientOut struct {
	mu sync.RWMutex
	m  map[netip.AddrPort]*outBatch
}

func (co *clientOut) get(ap netip.AddrPort) *outBatch {
	co.mu.RLock()
	defer co.mu.RUnlock()
	return co.m[ap]
}

func (co *clientOut) set(ap netip.AddrPort, ob *outBatch) {
	co.mu.Lock()
	defer co.mu.Unlock()
	if co.m == nil {
		co.m = map[netip.AddrPort]*outBatch{}
	}
	if ob == nil {
		delete(co.m, ap)
		return
	}
	co.m[ap] = ob
}

func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	return netip.AddrPort{}, false
}

// WriteTo sends a datagram to a client: ChannelData into the client's
// batch (sent by its allocation's handler), anything else at once.
func (l *listenConn) WriteTo(p []byte, to net.Addr) (int, error) {
	if isChannelData(p) {
		if ap, ok := addrPortOf(to); ok {
			if ob := l.out.get(ap); ob != nil {
				ob.add(p)
				return len(p), nil
			}
		}
	}
	return l.UDPConn.WriteTo(p, to)
}

// Write sends to a TLS client: ChannelData into its batch, anything else
// at once.
func (c *trackedConn) Write(p []byte) (int, error) {
	if ob := c.ob.Load(); ob != nil && isChannelData(p) {
		ob.add(p)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// batchFor makes the batch of the client at src reaching this relay at
// dst (its allocation c was just created) and returns it, and the function
// that removes it again; nil if the client is unknown.
func (r *Relay) batchFor(src, dst net.Addr) (*outBatch, func()) {
	sap, ok := addrPortOf(src)
	if !ok {
		return nil, nil
	}
	if _, tcp := dst.(*net.TCPAddr); tcp {
		tc := r.tls.byRemote(sap)
		if tc == nil {
			return nil, nil
		}
		ob := &outBatch{send: sendTLS, conn: tc.Conn}
		return ob, func() { tc.ob.CompareAndSwap(ob, nil) }
	}
	for _, l := range r.listen {
		if l.LocalAddr().String() == dst.String() {
			return &outBatch{send: sendUDP, to: src, ub: l.b}, func() { l.out.set(sap, nil) }
		}
	}
	return nil, nil
}

// publishBatch lets the writers to the client at src (dst) use ob.
func (r *Relay) publishBatch(src, dst net.Addr, ob *outBatch) {
	sap, _ := addrPortOf(src)
	if _, tcp := dst.(*net.TCPAddr); tcp {
		if tc := r.tls.byRemote(sap); tc != nil {
			tc.ob.Store(ob)
		}
		return
	}
	for _, l := range r.listen {
		if l.LocalAddr().String() == dst.String() {
			l.out.set(sap, ob)
		}
	}
}
