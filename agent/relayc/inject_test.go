package relayc

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// TestOnlyTheRelayFeedsTheSocket: a host other than the relay that sends
// well-formed ChannelData on a bound channel, and a Data indication naming
// a permitted peer, straight to the allocation's socket gets nothing
// delivered (the socket reads only its relay's address); a datagram that
// came through the relay after them is delivered.
func TestOnlyTheRelayFeedsTheSocket(t *testing.T) {
	ca, _ := testRoots(t)
	r := startTURN(t, ca)
	ina, inb := newInbox(), newInbox()
	a := allocate(t, AllocConfig{Transport: UDP, Addr: r.udp, Receive: ina.receive})
	b := allocate(t, AllocConfig{Transport: UDP, Addr: r.udp, Receive: inb.receive})
	permit(t, a, b.RelayedAddr().Addr())
	permit(t, b, a.RelayedAddr().Addr())
	exchange(t, a, b, ina, inb, "setup")
	ch, ok := a.peers.channel(b.RelayedAddr())
	if !ok {
		t.Fatal("no channel bound to b")
	}
	attacker, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	target := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: a.udp.LocalAddr().(*net.UDPAddr).Port}
	cd := make([]byte, channelHeader+len("injected"))
	binary.BigEndian.PutUint16(cd, ch)
	binary.BigEndian.PutUint16(cd[2:], uint16(len("injected")))
	copy(cd[channelHeader:], "injected")
	ind, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodData, stun.ClassIndication),
		peerAddr(b.RelayedAddr()), rawData("injected"), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	before := a.dropped.Load()
	for _, pkt := range [][]byte{cd, ind.Raw} {
		if _, err := attacker.WriteToUDP(pkt, target); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond) // the injected datagrams are queued before the relayed one
	if err := b.WriteTo(context.Background(), []byte("genuine"), a.RelayedAddr()); err != nil {
		t.Fatal(err)
	}
	ina.wait(t, "genuine", 5*time.Second)
	ina.mu.Lock()
	defer ina.mu.Unlock()
	for _, got := range ina.got {
		if got.b == "injected" {
			t.Fatalf("a datagram injected by %s was delivered as from %s", attacker.LocalAddr(), got.from)
		}
	}
	if d := a.dropped.Load() - before; d != 2 {
		t.Fatalf("%d datagrams counted as dropped, want the 2 injected", d)
	}
}
