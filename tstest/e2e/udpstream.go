package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

// UDPStream sends numbered datagrams from one host to another every
// interval and records when they arrive.
type UDPStream struct {
	Name string
	conn net.Conn       // sender, in the source namespace
	pc   net.PacketConn // receiver, in the destination namespace
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	sent     uint64
	received uint64
	lastSeq  uint64
	row      uint64 // datagrams received in sequence up to lastSeq
	first    time.Time
	last     time.Time
	got      map[uint64]time.Time // every sequence number received, and when
}

// StartUDPStream starts a stream from src to dst:port; it ends with Stop.
func StartUDPStream(ctx context.Context, name string, src, dst *netns.Host, dstAddr netip.AddrPort, interval time.Duration) (*UDPStream, error) {
	pc, err := dst.ListenPacket("udp", dstAddr.String())
	if err != nil {
		return nil, err
	}
	conn, err := src.DialContext(ctx, "udp", dstAddr.String())
	if err != nil {
		pc.Close()
		return nil, err
	}
	return NewUDPStream(name, conn, pc, interval), nil
}

// NewUDPStream starts a stream that sends on conn and receives on pc,
// wherever they were opened; it ends with Stop, which closes both.
func NewUDPStream(name string, conn net.Conn, pc net.PacketConn, interval time.Duration) *UDPStream {
	s := &UDPStream{Name: name, conn: conn, pc: pc, stop: make(chan struct{}), got: map[uint64]time.Time{}}
	s.wg.Go(func() {
		buf := make([]byte, 64)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n != 8 {
				continue
			}
			now := time.Now()
			seq := binary.BigEndian.Uint64(buf[:8])
			s.mu.Lock()
			if seq == s.lastSeq+1 {
				s.row++
			} else {
				s.row = 1
			}
			s.lastSeq = seq
			if _, dup := s.got[seq]; !dup {
				s.got[seq] = now
			}
			s.received++
			if s.first.IsZero() {
				s.first = now
			}
			s.last = now
			s.mu.Unlock()
		}
	})
	s.wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		var seq uint64
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			seq++
			// Errors (no route yet, ICMP unreachable) are expected at
			// times: the receiver's record is what counts.
			_, _ = conn.Write(binary.BigEndian.AppendUint64(nil, seq))
			s.mu.Lock()
			s.sent = seq
			s.mu.Unlock()
		}
	})
	return s
}

// Stop ends the stream; it is idempotent.
func (s *UDPStream) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.conn.Close()
	s.pc.Close()
	s.wg.Wait()
}

// Snapshot returns how many datagrams were sent and received, and when the
// last one arrived.
func (s *UDPStream) Snapshot() (sent, received uint64, last time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.received, s.last
}

// Lost returns the sequence numbers in [from, to] that never arrived.
func (s *UDPStream) Lost(from, to uint64) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lost []uint64
	for i := from; i <= to; i++ {
		if _, ok := s.got[i]; !ok {
			lost = append(lost, i)
		}
	}
	return lost
}

// WaitSteady waits until the last n datagrams sent have all arrived, in
// order, the latest one just now: the stream is established, not just
// starting.
func (s *UDPStream) WaitSteady(ctx context.Context, n uint64) error {
	return netns.WaitFor(ctx, 20*time.Millisecond, func() error {
		s.mu.Lock()
		sent, got, row, last := s.sent, s.received, s.row, s.last
		s.mu.Unlock()
		if row >= n && time.Since(last) < 200*time.Millisecond {
			return nil
		}
		return fmt.Errorf("%s: %d of %d datagrams arrived, the last %d in a row", s.Name, got, sent, row)
	})
}
