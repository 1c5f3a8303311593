package path

import (
	"golang.zx2c4.com/wireguard/conn"
)

// demuxReceive wraps one of the inner bind's batched receive functions.
// The batch wireguard-go gets is the inner bind's own batch (same buffers,
// same GRO-split datagrams, same endpoints), with the datagrams that are
// not WireGuard taken out; a batch of nothing but those is not returned at
// all, the next one is read instead.
func (b *Bind) demuxReceive(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			n, err := fn(bufs, sizes, eps)
			if err != nil {
				return 0, err
			}
			if n = b.demux(bufs, sizes, eps, n); n > 0 {
				return n, nil
			}
		}
	}
}

// demux hands the first n datagrams of a batch that are not WireGuard to
// the path layer and takes them out of the batch in place: their size
// becomes 0 (a ReceiveFunc's callers skip those) and the count shrinks to
// just past the last WireGuard datagram. The buffers themselves cannot be
// moved: wireguard-go reads datagram i from the buffer it owns at index i.
// Nothing is allocated and nothing is copied; WireGuard datagrams are only
// looked at (their first four bytes).
func (b *Bind) demux(bufs [][]byte, sizes []int, eps []conn.Endpoint, n int) int {
	last := 0
	for i := range n {
		p := bufs[i][:sizes[i]]
		switch classify(p) {
		case classWireGuard:
			last = i + 1
			continue
		case classSTUN:
			b.cnt.stun.Add(1)
			if h := b.h.Load(); h != nil {
				h.h.handleSTUN(p, addrOf(eps[i]))
			}
		case classProbe:
			b.cnt.probes.Add(1)
			if h := b.h.Load(); h != nil {
				h.h.handleProbe(p, Route{Addr: addrOf(eps[i])})
			}
		default:
			if sizes[i] > 0 {
				b.cnt.unknown.Add(1)
			}
		}
		sizes[i] = 0
	}
	return last
}
