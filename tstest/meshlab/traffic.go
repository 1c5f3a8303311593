package meshlab

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
)

// ServeEcho echoes every TCP connection to n's overlay port until the test
// ends.
func ServeEcho(t testing.TB, n Node, port uint16) {
	t.Helper()
	ln, err := n.Listen(port)
	if err != nil {
		t.Fatal(err)
	}
	e := &e2e.EchoServer{}
	e.Serve(ln)
	t.Cleanup(e.Close)
}

// Reach connects from n to dst, where an echo server runs, and exchanges
// a line, all within limit.
func Reach(ctx context.Context, n Node, dst netip.AddrPort, limit time.Duration) error {
	return e2e.Reach(ctx, n.Dial, dst, limit)
}

// Exchange sends msg on c and reads it back from the echo server.
var Exchange = e2e.Exchange

// IsTimeout reports whether err is a timeout (a SYN nobody answered), as
// opposed to, say, a refused connection.
var IsTimeout = e2e.IsTimeout

// StartUDPStream sends numbered datagrams from one node to another's port
// every interval, and waits until they arrive steadily (first contact may
// take up to e2e.FirstContactTimeout). It stops when the test ends.
func StartUDPStream(t testing.TB, from, to Node, port uint16, interval time.Duration) *e2e.UDPStream {
	t.Helper()
	pc, err := to.ListenUDP(port)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := from.DialUDP(t.Context(), netip.AddrPortFrom(to.V4(), port))
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	s := e2e.NewUDPStream(from.Hostname()+"->"+to.Hostname(), conn, pc, interval)
	t.Cleanup(s.Stop)
	ctx, cancel := context.WithTimeout(t.Context(), e2e.FirstContactTimeout)
	defer cancel()
	if err := s.WaitSteady(ctx, 10); err != nil {
		t.Fatal(err)
	}
	return s
}
