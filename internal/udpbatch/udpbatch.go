// Package udpbatch reads and writes UDP datagrams in batches (recvmmsg and
// sendmmsg on Linux, through golang.org/x/net's ipv4/ipv6 PacketConn; one
// datagram a call elsewhere), for the relay's sockets and the relay
// client's: one system call and one wake-up of the reading goroutine for
// as many datagrams as are waiting, where a plain ReadFrom costs one each.
// On Linux, runs of equal-size datagrams to one address go out as one UDP
// GSO send (UDP_SEGMENT), which the network stack carries as one packet
// until it is segmented, and a socket may take coalesced datagrams in
// (UDP_GRO), which Next splits again: what wireguard-go's own socket does.
package udpbatch

import (
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Size is the number of datagrams read or written per call at most
// (wireguard-go's conn.IdealBatchSize).
const Size = 128

// maxGSOSegments and maxGSOBytes bound one GSO send (the kernel's limits:
// 64 segments, one IP datagram's worth of payload).
const (
	maxGSOSegments = 64
	maxGSOBytes    = 65000
)

// Message is one datagram of a batch (ipv4.Message and ipv6.Message are
// the same type).
type Message = ipv4.Message

// batchConn is what golang.org/x/net's ipv4 and ipv6 PacketConns offer.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// Conn batches the I/O of one UDP socket. Its reads (Next) are for one
// goroutine at a time; Send may be called from any goroutine, also while
// another reads (each datagram goes out whole).
type Conn struct {
	c   *net.UDPConn
	bc  batchConn
	gro bool // the socket coalesces received datagrams (UDP_GRO)

	msgs []Message
	n, i int // msgs[i:n] are read and not yet (wholly) returned
	off  int // the next segment's offset in msgs[i] (GRO)

	sendMu sync.Mutex
	sendMs []Message
	noGSO  atomic.Bool // GSO failed once: send each datagram alone
}

// Options tune a Conn.
type Options struct {
	// Batch is the number of datagrams read per call (0: Size).
	Batch int
	// BufSize is the read buffer per datagram: a longer datagram is
	// truncated to it and reported so. With GRO it should be 64 KiB.
	BufSize int
	// GRO asks the kernel to coalesce received datagrams (Linux UDP_GRO);
	// Next splits them.
	GRO bool
}

// New batches c's I/O.
func New(c *net.UDPConn, o Options) *Conn {
	b := &Conn{c: c}
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		b.bc = ipv4.NewPacketConn(c)
	} else {
		b.bc = ipv6.NewPacketConn(c)
	}
	if o.Batch <= 0 {
		o.Batch = Size
	}
	if o.GRO {
		b.gro = enableGRO(c)
	}
	b.msgs = make([]Message, o.Batch)
	for i := range b.msgs {
		b.msgs[i].Buffers = [][]byte{make([]byte, o.BufSize)}
		if b.gro {
			b.msgs[i].OOB = make([]byte, oobSize)
		}
	}
	return b
}

// Next returns the next datagram, reading a new batch when the last is
// used up (blocking until at least one datagram arrives). p is valid until
// the next call; truncated reports a datagram longer than the buffer.
func (b *Conn) Next() (p []byte, from net.Addr, truncated bool, err error) {
	if b.i >= b.n {
		b.i, b.n, b.off = 0, 0, 0
		n, err := b.bc.ReadBatch(b.msgs, 0)
		if err != nil {
			return nil, nil, false, err
		}
		b.n = n
	}
	m := &b.msgs[b.i]
	d := m.Buffers[0][:m.N]
	seg := 0
	if b.gro {
		seg = groSize(m.OOB[:m.NN])
	}
	if seg <= 0 || seg >= len(d)-b.off {
		p = d[b.off:]
		b.i, b.off = b.i+1, 0
		return p, m.Addr, m.Flags&msgTrunc != 0, nil
	}
	p = d[b.off : b.off+seg]
	b.off += seg
	return p, m.Addr, false, nil
}

// Buffered reports whether Next has datagrams of the last batch left.
func (b *Conn) Buffered() bool { return b.i < b.n }

// Send sends datagrams to addr, each made of its parts joined (a header
// and a payload, say), in order: consecutive datagrams of one length go
// out as one GSO send where the kernel takes it (the last of a run may be
// shorter), the rest one datagram each, all in as few sendmmsg calls as
// the kernel accepts.
func (b *Conn) Send(addr net.Addr, datagrams [][][]byte) error {
	b.sendMu.Lock()
	defer b.sendMu.Unlock()
	gso := gsoSupported && !b.noGSO.Load()
	ms := b.group(addr, datagrams, gso)
	err := b.writeAll(ms)
	if err != nil && gso {
		// The path does not take GSO (an old kernel, a device without
		// checksum offload): from now on, one datagram each.
		b.noGSO.Store(true)
		err = b.writeAll(b.group(addr, datagrams, false))
	}
	return err
}

// group builds the messages of datagrams (with GSO: one per run of equal
// length).
func (b *Conn) group(addr net.Addr, datagrams [][][]byte, gso bool) []Message {
	ms := b.sendMs[:0]
	for i := 0; i < len(datagrams); {
		size := partsLen(datagrams[i])
		bufs := append([][]byte(nil), datagrams[i]...)
		segs, total := 1, size
		i++
		for gso && i < len(datagrams) && segs < maxGSOSegments {
			n := partsLen(datagrams[i])
			if n > size || total+n > maxGSOBytes {
				break
			}
			bufs = append(bufs, datagrams[i]...)
			segs, total = segs+1, total+n
			i++
			if n < size {
				break // a shorter datagram ends the run
			}
		}
		m := Message{Buffers: bufs, Addr: addr}
		if segs > 1 {
			m.OOB = gsoControl(size)
		}
		ms = append(ms, m)
	}
	b.sendMs = ms[:0]
	return ms
}

func (b *Conn) writeAll(ms []Message) error {
	for len(ms) > 0 {
		n, err := b.bc.WriteBatch(ms, 0)
		if err != nil {
			return err
		}
		ms = ms[n:]
	}
	return nil
}

func partsLen(parts [][]byte) int {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	return n
}
