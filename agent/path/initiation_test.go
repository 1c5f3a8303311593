package path

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestFirstInitiationCompletesOnThePathFound: both devices send their
// first packet before the path layer knows a path, so wireguard-go sends
// each one's handshake initiation to a first guess that swallows it (an
// endpoint hint nothing answers from), and it sends no other for 5 s. When
// the path layer finds the direct path, the side that kicks first sends
// its initiation again along it: the handshake completes with the two
// initiations wireguard-go made in the first place, not after its retry
// (on the old code the tunnel waited for a third and fourth initiation).
func TestFirstInitiationCompletesOnThePathFound(t *testing.T) {
	a, b := newTestNode(t, 1), newTestNode(t, 2)
	hole, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	guess := hole.LocalAddr().(*net.UDPAddr).AddrPort()
	a.admit(t, b, guess)
	b.admit(t, a, guess)
	for _, n := range []*testNode{a, b} {
		c, err := n.dev.Net().DialUDPAddrPort(netip.AddrPortFrom(n.overlay, 0), netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, 90, 0, byte(3 - n.overlay.As4()[3])}), overlayPort))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("before any path")); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	waitFor(t, 5*time.Second, "both first initiations sent to the guess", func() bool {
		return a.spy.initiations() == 1 && b.spy.initiations() == 1
	})

	ma, mb := startManager(t, a, Config{}), startManager(t, b, Config{})
	if err := ma.SetPeer(b.pub(), []Candidate{{Local, b.addr()}}); err != nil {
		t.Fatal(err)
	}
	if err := mb.SetPeer(a.pub(), []Candidate{{Local, a.addr()}}); err != nil {
		t.Fatal(err)
	}
	waitPath(t, ma, b.pub(), PathDirect, b.addr().String())
	waitPath(t, mb, a.pub(), PathDirect, a.addr().String())
	tunnelBothWays(t, a, b)
	if na, nb := a.spy.initiations(), b.spy.initiations(); na+nb != 2 {
		t.Fatalf("wireguard-go made %d and %d handshake initiations before the tunnel worked both ways, want the first one of each (no retry)", na, nb)
	}
}
