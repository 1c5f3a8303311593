package path

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// loopRelay is a relay allocation on loopback: a UDP socket of its own
// that sends for its owner (WriteTo) and hands its owner what arrives
// (deliver). It is what a TURN allocation does, without TURN's framing,
// so that relayed WireGuard runs over real sockets.
type loopRelay struct {
	c       *net.UDPConn
	deliver func([]byte, netip.AddrPort)

	mu        sync.Mutex
	permitted []netip.Addr
	drop      bool // drop everything, both ways (a relay that stopped)
	writes    int  // datagrams sent for its owner
}

func (r *loopRelay) written() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes
}

func newLoopRelay(t *testing.T, b *Bind, id RelayID) *loopRelay {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &loopRelay{c: c}
	r.deliver, err = b.AttachRelay(id, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if !r.dropping() {
				r.deliver(buf[:n], from)
			}
		}
	}()
	return r
}

func (r *loopRelay) dropping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drop
}

func (r *loopRelay) setDrop(d bool) {
	r.mu.Lock()
	r.drop = d
	r.mu.Unlock()
}

func (r *loopRelay) RelayedAddr() netip.AddrPort {
	return unmap(r.c.LocalAddr().(*net.UDPAddr).AddrPort())
}

func (r *loopRelay) WriteTo(_ context.Context, b []byte, to netip.AddrPort) error {
	if r.dropping() {
		return nil
	}
	r.mu.Lock()
	r.writes++
	r.mu.Unlock()
	_, err := r.c.WriteToUDPAddrPort(b, to)
	return err
}

func (r *loopRelay) Permit(_ context.Context, addrs []netip.Addr) error {
	r.mu.Lock()
	r.permitted = addrs
	r.mu.Unlock()
	return nil
}

func TestParseEndpointRelayForm(t *testing.T) {
	b := NewBind(nil)
	b.Wrap(newStdBind())
	ep, err := b.ParseEndpoint("relay:3:127.0.0.1:5000")
	if err != nil {
		t.Fatal(err)
	}
	if got := ep.DstToString(); got != "127.0.0.1:5000" {
		t.Fatalf("DstToString = %q, want the final destination (what wg show parses)", got)
	}
	if got := ep.(*relayEndpoint).DstAddrPort(); got != netip.MustParseAddrPort("127.0.0.1:5000") {
		t.Fatalf("DstAddrPort = %v", got)
	}
	if again, _ := b.ParseEndpoint("relay:3:127.0.0.1:5000"); again != ep {
		t.Fatal("the same relay endpoint is a new object each time: wireguard-go would allocate per packet")
	}
	if ep, err := b.ParseEndpoint("[::1]:7"); err != nil || ep.DstToString() != "[::1]:7" {
		t.Fatalf("direct endpoint: %v, %v", ep, err)
	}
	for _, bad := range []string{"relay:0:127.0.0.1:5", "relay:x:127.0.0.1:5", "relay:1:", "relay:1:nope:5",
		"relay:70000:127.0.0.1:5", "relay:1:127.0.0.1:0", "relay:"} {
		if _, err := b.ParseEndpoint(bad); err == nil {
			t.Errorf("ParseEndpoint(%q) accepted", bad)
		}
	}
}

// TestWireGuardThroughRelay: a sends to b only through its relay
// allocation and b answers to the relayed address; the handshake and the
// tunnel's datagrams go through the relay receive function, a's replies
// go out through the relay again (the received packets' endpoint is the
// relay route, which WireGuard takes as the peer's), and WireGuard's UAPI
// shows the peer's final address, the form `wg show` parses.
func TestWireGuardThroughRelay(t *testing.T) {
	a, b := newTestNode(t, 1), newTestNode(t, 2)
	relay := newLoopRelay(t, a.bind, 1)
	a.admit(t, b, netip.AddrPort{})
	if err := a.dev.SetEndpoint(b.pub(), Route{Relay: 1, Addr: b.addr()}.String()); err != nil {
		t.Fatal(err)
	}
	b.admit(t, a, relay.RelayedAddr())
	if err := overlayRoundTrip(t, a, b, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := overlayRoundTrip(t, b, a, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	before := relay.written()
	if err := overlayRoundTrip(t, a, b, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if relay.written() == before {
		t.Fatal("a's datagrams to b no longer go through its relay")
	}
	st := peerStats(t, a.dev, b.pub())
	if want := b.addr().String(); st.EndpointText != want {
		t.Fatalf("a's endpoint for b in the UAPI is %q, want the final address %q", st.EndpointText, want)
	}
	if st := peerStats(t, b.dev, a.pub()); st.Endpoint != relay.RelayedAddr() {
		t.Fatalf("b's endpoint for a is %v, want the relayed address %v: a packet went around the relay", st.Endpoint, relay.RelayedAddr())
	}
	if c := a.bind.Counters(); c.RelayDropped != 0 {
		t.Fatalf("relayed packets dropped: %+v", c)
	}
}

func (r *loopRelay) permittedAddrs() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]netip.Addr(nil), r.permitted...)
}
