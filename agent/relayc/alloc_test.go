package relayc

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

func allocate(t *testing.T, cfg AllocConfig) *Allocation {
	t.Helper()
	if cfg.Username == "" {
		cfg.Username, cfg.Password = testUser, testPass
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := Allocate(ctx, cfg)
	if err != nil {
		t.Fatalf("allocate at %s over %s: %v", cfg.Addr, cfg.Transport, err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func permit(t *testing.T, a *Allocation, addrs ...netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Permit(ctx, addrs); err != nil {
		t.Fatal(err)
	}
}

// exchange sends one datagram from a to b's relayed address and one back,
// several times so the channel bindings made in the background are used too.
func exchange(t *testing.T, a, b *Allocation, ina, inb *inbox, tag string) {
	t.Helper()
	for i := range 3 {
		ab, ba := tag+" a->b "+string(rune('0'+i)), tag+" b->a "+string(rune('0'+i))
		if err := a.WriteTo(context.Background(), []byte(ab), b.RelayedAddr()); err != nil {
			t.Fatal(err)
		}
		if got := inb.wait(t, ab, 5*time.Second); got.from != a.RelayedAddr() {
			t.Fatalf("%q arrived from %s, want a's relayed address %s", ab, got.from, a.RelayedAddr())
		}
		if err := b.WriteTo(context.Background(), []byte(ba), a.RelayedAddr()); err != nil {
			t.Fatal(err)
		}
		if got := ina.wait(t, ba, 5*time.Second); got.from != b.RelayedAddr() {
			t.Fatalf("%q arrived from %s, want b's relayed address %s", ba, got.from, b.RelayedAddr())
		}
		time.Sleep(50 * time.Millisecond) // let the ChannelBind answer land between rounds
	}
}

// TestRelayBothWaysUDPAndTLS: two agents on two different relays, one
// reaching its relay over UDP and one over TLS, exchange datagrams between
// their relayed addresses in both directions (Send indications first, then
// ChannelData once bound).
func TestRelayBothWaysUDPAndTLS(t *testing.T) {
	ca, roots := testRoots(t)
	r1, r2 := startTURN(t, ca), startTURN(t, ca)
	ina, inb := newInbox(), newInbox()
	a := allocate(t, AllocConfig{Transport: UDP, Addr: r1.udp, Receive: ina.receive})
	b := allocate(t, AllocConfig{Transport: TLS, Addr: r2.tls, TLS: TLSConfig(roots, nil), Receive: inb.receive})
	if a.RelayedAddr() == b.RelayedAddr() || !a.RelayedAddr().Addr().IsLoopback() {
		t.Fatalf("relayed addresses %s and %s", a.RelayedAddr(), b.RelayedAddr())
	}
	permit(t, a, b.RelayedAddr().Addr())
	permit(t, b, a.RelayedAddr().Addr())
	exchange(t, a, b, ina, inb, "mixed")
	if _, ok := a.peers.channel(b.RelayedAddr()); !ok {
		t.Errorf("no channel bound on a after the exchange")
	}
	if _, ok := b.peers.channel(a.RelayedAddr()); !ok {
		t.Errorf("no channel bound on b after the exchange")
	}
}

// TestRelayToPlainPeer: a peer without a relay (a plain UDP socket) and an
// agent on the relay over UDP and over TLS.
func TestRelayToPlainPeer(t *testing.T) {
	ca, roots := testRoots(t)
	r := startTURN(t, ca)
	for _, tc := range []AllocConfig{{Transport: UDP, Addr: r.udp}, {Transport: TLS, Addr: r.tls, TLS: TLSConfig(roots, nil)}} {
		t.Run(string(tc.Transport), func(t *testing.T) {
			in := newInbox()
			tc.Receive = in.receive
			a := allocate(t, tc)
			peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			pa := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			permit(t, a, pa.Addr())
			if _, err := peer.WriteToUDPAddrPort([]byte("to agent"), a.RelayedAddr()); err != nil {
				t.Fatal(err)
			}
			if got := in.wait(t, "to agent", 5*time.Second); got.from != pa {
				t.Fatalf("from %s, want %s", got.from, pa)
			}
			for i := range 3 {
				if err := a.WriteTo(context.Background(), []byte("to peer"), pa); err != nil {
					t.Fatal(err)
				}
				_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 100)
				n, from, err := peer.ReadFromUDPAddrPort(buf)
				if err != nil || string(buf[:n]) != "to peer" || from != a.RelayedAddr() {
					t.Fatalf("round %d: peer read %q from %s (%v), want \"to peer\" from %s", i, buf[:n], from, err, a.RelayedAddr())
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
