// Package udpbatch reads and writes UDP datagrams in batches (recvmmsg and
// sendmmsg on Linux, through golang.org/x/net's ipv4/ipv6 PacketConn; one
// datagram a call elsewhere), for the relay's sockets and the relay
// client's: one system call and one wake-up of the reading goroutine for
// as many datagrams as are waiting, where a plain ReadFrom costs one each.
package udpbatch

import (
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Size is the number of datagrams read or written per call at most
// (wireguard-go's conn.IdealBatchSize).
const Size = 128

// Message is one datagram of a batch (ipv4.Message and ipv6.Message are
// the same type).
type Message = ipv4.Message

// batchConn is what golang.org/x/net's ipv4 and ipv6 PacketConns offer.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// Conn batches the I/O of one UDP socket. Its reads (Next) are for one
// goroutine at a time; WriteBatch may be called concurrently with them
// (and with other writes: each datagram goes out whole).
type Conn struct {
	c    *net.UDPConn
	bc   batchConn
	msgs []Message
	n, i int // msgs[i:n] are read and not yet returned
}

// New batches c's I/O, reading datagrams of up to bufSize bytes (a longer
// one is truncated to bufSize, and reported so, as by ReadFrom).
func New(c *net.UDPConn, bufSize int) *Conn {
	b := &Conn{c: c}
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		b.bc = ipv4.NewPacketConn(c)
	} else {
		b.bc = ipv6.NewPacketConn(c)
	}
	b.msgs = make([]Message, Size)
	for i := range b.msgs {
		b.msgs[i].Buffers = [][]byte{make([]byte, bufSize)}
	}
	return b
}

// Next returns the next datagram, reading a new batch when the last is
// used up (blocking until at least one datagram arrives). b is valid until
// the next call; truncated reports a datagram longer than bufSize.
func (b *Conn) Next() (p []byte, from net.Addr, truncated bool, err error) {
	if b.i >= b.n {
		b.i, b.n = 0, 0
		n, err := b.bc.ReadBatch(b.msgs, 0)
		if err != nil {
			return nil, nil, false, err
		}
		b.n = n
	}
	m := &b.msgs[b.i]
	b.i++
	return m.Buffers[0][:m.N], m.Addr, m.Flags&msgTrunc != 0, nil
}

// Buffered is how many datagrams of the last batch Next has not returned.
func (b *Conn) Buffered() int { return b.n - b.i }

// WriteBatch sends every message (each to its Addr, its Buffers joined
// into one datagram), as few system calls as the kernel takes them in.
func (b *Conn) WriteBatch(ms []Message) error {
	for len(ms) > 0 {
		n, err := b.bc.WriteBatch(ms, 0)
		if err != nil {
			return err
		}
		ms = ms[n:]
	}
	return nil
}
