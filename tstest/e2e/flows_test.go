package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
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

// udpStream is the package's datagram stream (udpstream.go).
type udpStream = UDPStream

// startUDPStream starts a stream from src to dst:port that ends with the
// test.
func startUDPStream(t *testing.T, name string, src, dst *netns.Host, dstAddr netip.AddrPort, interval time.Duration) *udpStream {
	t.Helper()
	s, err := StartUDPStream(t.Context(), name, src, dst, dstAddr, interval)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}
