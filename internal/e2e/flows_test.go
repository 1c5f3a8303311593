package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/netns"
)

// Traffic between agents from the test process: sockets opened inside the
// agents' namespaces (netns.Host.Listen, DialContext) go through their
// kernel TUN interfaces like any program's there.

// serveEcho listens on addr inside h's namespace and echoes every
// connection until the test ends.
func serveEcho(t *testing.T, h *netns.Host, addr netip.AddrPort) {
	t.Helper()
	ln, err := h.Listen("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{}
	e.Serve(ln)
	t.Cleanup(e.Close)
}

// reach opens a TCP connection from h to dst and exchanges a line, all
// within limit.
func reach(ctx context.Context, h *netns.Host, dst netip.AddrPort, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	c, err := h.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping\n" {
		return fmt.Errorf("echo from %s garbled: %q", dst, buf)
	}
	return nil
}

// exchange sends msg on c and reads it back from the echo server.
func exchange(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, sent %q", buf, msg)
	}
	return nil
}

// isTimeout reports whether err is a timeout (a SYN nobody answered), as
// opposed to, say, a refused connection.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// udpStream sends numbered datagrams from one host to another every
// interval and records when they arrive.
type udpStream struct {
	name string
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
}

// startUDPStream starts a stream from src to dst:port; it ends with the
// test (or Stop).
func startUDPStream(t *testing.T, name string, src, dst *netns.Host, dstAddr netip.AddrPort, interval time.Duration) *udpStream {
	t.Helper()
	pc, err := dst.ListenPacket("udp", dstAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := src.DialContext(t.Context(), "udp", dstAddr.String())
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	s := &udpStream{name: name, conn: conn, pc: pc, stop: make(chan struct{})}
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
	t.Cleanup(s.Stop)
	return s
}

// Stop ends the stream; it is idempotent.
func (s *udpStream) Stop() {
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
func (s *udpStream) Snapshot() (sent, received uint64, last time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.received, s.last
}

// waitSteady waits until the last n datagrams sent have all arrived, in
// order, the latest one just now: the stream is established, not just
// starting.
func (s *udpStream) waitSteady(ctx context.Context, n uint64) error {
	return netns.WaitFor(ctx, 20*time.Millisecond, func() error {
		s.mu.Lock()
		sent, got, row, last := s.sent, s.received, s.row, s.last
		s.mu.Unlock()
		if row >= n && time.Since(last) < 200*time.Millisecond {
			return nil
		}
		return fmt.Errorf("%s: %d of %d datagrams arrived, the last %d in a row", s.name, got, sent, row)
	})
}
