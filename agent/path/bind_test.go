package path

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
)

func newStdBind() conn.Bind { return conn.NewDefaultBind() }

func peerStats(t *testing.T, d *wgdev.Device, k certs.WireGuardKey) wgdev.PeerStats {
	t.Helper()
	ps, err := d.Peers()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.PublicKey == k {
			return p
		}
	}
	t.Fatalf("peer %v not configured", k)
	return wgdev.PeerStats{}
}

// garbage is what an attacker can throw at the WireGuard port that is not
// WireGuard: none of it may reach wireguard-go.
func garbage(t *testing.T) [][]byte {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stun.Build(stun.TransactionID, stun.BindingSuccess,
		&stun.XORMappedAddress{IP: []byte{10, 0, 0, 1}, Port: 4}, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	probeShort := append(probeMagic[:], 1, 2, 3)
	probeForged := probe{kind: kindPong, seen: netip.MustParseAddrPort("10.1.1.1:1")}.marshal(&[32]byte{})
	return [][]byte{
		req.Raw, resp.Raw, probeShort, probeForged,
		{5, 0, 0, 0, 1, 2, 3, 4},       // type 5
		{1, 0, 0, 1, 9, 9, 9, 9},       // type 1 with a nonzero reserved byte
		{0x40, 0x01, 0, 4, 1, 2, 3, 4}, // TURN ChannelData
		{0xff}, make([]byte, 1400),
	}
}

// TestGarbageDoesNotReachWireGuard: two real devices on path Binds talk
// through their tunnel while the WireGuard port is showered with STUN,
// probes and junk; wireguard-go is handed WireGuard only.
func TestGarbageDoesNotReachWireGuard(t *testing.T) {
	a, b := newTestNode(t, 1), newTestNode(t, 2)
	a.admit(t, b, b.addr())
	b.admit(t, a, a.addr())
	junk := garbage(t)
	for range 20 {
		sendRaw(t, a.addr(), junk...)
	}
	if err := overlayRoundTrip(t, a, b, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := overlayRoundTrip(t, b, a, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// An empty datagram ends StdNetBind's batch with GRO on (its
	// splitCoalescedMessages stops at the first of size 0, dropping the
	// rest of what it read): sent before the handshake, it can cost the
	// handshake response a 5 s retry, so it goes last.
	sendRaw(t, a.addr(), []byte{})
	// The junk went in before the tunnel's datagrams, on the same socket.
	if n := a.spy.leaked.Load(); n != 0 {
		t.Fatalf("%d datagrams that are not WireGuard reached wireguard-go (counters %+v)", n, a.bind.Counters())
	}
	waitFor(t, 5*time.Second, "the junk to be counted", func() bool {
		c := a.bind.Counters()
		return c.STUN >= 40 && c.Probes >= 40 && c.Unknown >= 20*5
	})
	if a.spy.wireguard.Load() == 0 {
		t.Fatal("no WireGuard datagram reached wireguard-go")
	}
}

// batch builds a receive batch of the given datagrams.
func batch(pkts ...[]byte) (bufs [][]byte, sizes []int, eps []conn.Endpoint) {
	ep := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("192.0.2.1:51820")}
	for _, p := range pkts {
		buf := make([]byte, 2048)
		sizes = append(sizes, copy(buf, p))
		bufs = append(bufs, buf)
		eps = append(eps, ep)
	}
	return bufs, sizes, eps
}

func wgPacket(typ byte, n int) []byte {
	p := make([]byte, n)
	p[0] = typ
	return p
}

func TestDemuxTakesOutAllButWireGuard(t *testing.T) {
	b := NewBind(nil)
	junk := garbage(t)
	pkts := [][]byte{wgPacket(4, 1420), junk[0], wgPacket(1, 148), junk[2], junk[4], wgPacket(4, 32), junk[6], junk[0]}
	bufs, sizes, eps := batch(pkts...)
	n := b.demux(bufs, sizes, eps, len(pkts))
	if n != 6 {
		t.Fatalf("count %d, want 6 (just past the last WireGuard datagram)", n)
	}
	want := []int{1420, 0, 148, 0, 0, 32}
	for i := range n {
		if sizes[i] != want[i] {
			t.Errorf("sizes[%d] = %d, want %d", i, sizes[i], want[i])
		}
	}
	if c := b.Counters(); c.STUN != 2 || c.Probes != 1 || c.Unknown != 2 {
		t.Fatalf("counters %+v", c)
	}
	bufs, sizes, eps = batch(junk[0], junk[4])
	if n := b.demux(bufs, sizes, eps, 2); n != 0 {
		t.Fatalf("a batch of no WireGuard: count %d", n)
	}
}

func TestDemuxAllocatesNothingForWireGuard(t *testing.T) {
	b := NewBind(nil)
	pkts := make([][]byte, conn.IdealBatchSize)
	for i := range pkts {
		pkts[i] = wgPacket(4, 1420)
	}
	bufs, sizes, eps := batch(pkts...)
	if a := testing.AllocsPerRun(100, func() { b.demux(bufs, sizes, eps, len(bufs)) }); a != 0 {
		t.Fatalf("%v allocations per batch of WireGuard", a)
	}
}

// BenchmarkDemux is the receive path's cost per batch of 128 WireGuard
// datagrams (the inner bind's read excluded): no allocation, no copy.
func BenchmarkDemux(b *testing.B) {
	pb := NewBind(nil)
	pkts := make([][]byte, conn.IdealBatchSize)
	for i := range pkts {
		pkts[i] = wgPacket(4, 1420)
	}
	bufs, sizes, eps := batch(pkts...)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkts) * 1420))
	for b.Loop() {
		pb.demux(bufs, sizes, eps, len(bufs))
	}
}
