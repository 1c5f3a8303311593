package e2e

import (
	"context"
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
	e := &EchoServer{}
	e.Serve(ln)
	t.Cleanup(e.Close)
}

// reach opens a TCP connection from h to dst and exchanges a line, all
// within limit.
func reach(ctx context.Context, h *netns.Host, dst netip.AddrPort, limit time.Duration) error {
	return Reach(ctx, HostDialer(h), dst, limit)
}

func exchange(c net.Conn, msg string) error { return Exchange(c, msg) }

func isTimeout(err error) bool { return IsTimeout(err) }

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
