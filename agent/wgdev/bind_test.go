package wgdev

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// sinkBind is a conn.Bind that counts what is sent to each destination
// and delivers what the test queues as received.
type sinkBind struct {
	conn.Bind
	sent map[netip.AddrPort]int
	in   chan received
}

type received struct {
	b  []byte
	ep netip.AddrPort
}

func (s *sinkBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	return []conn.ReceiveFunc{func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		r := <-s.in
		sizes[0] = copy(packets[0], r.b)
		eps[0] = &conn.StdNetEndpoint{AddrPort: r.ep}
		return 1, nil
	}}, 51820, nil
}

func (s *sinkBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	s.sent[addrPortOf(ep)] += len(bufs)
	return nil
}

// initiation is a handshake initiation with sender index idx.
func initiation(idx uint32) []byte {
	b := message(device.MessageInitiationType, device.MessageInitiationSize)
	binary.LittleEndian.PutUint32(b[4:], idx)
	return b
}

// response is a handshake response to the initiation with sender index idx.
func response(idx uint32) []byte {
	b := message(device.MessageResponseType, device.MessageResponseSize)
	binary.LittleEndian.PutUint32(b[8:], idx)
	return b
}

func message(typ uint32, size int) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b, typ)
	return b
}

// TestHandshakeLimit: initiations to a destination that never answers are
// bounded by the burst and the interval, per address, however many peers
// (ports) point there; an answer lifts the limit for that destination;
// other traffic and other destinations are not affected; a refused
// destination gets nothing. Fake clock.
func TestHandshakeLimit(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	silent := netip.MustParseAddrPort("127.0.0.1:9")
	answering := netip.MustParseAddrPort("127.0.0.2:51820")
	refused := netip.MustParseAddrPort("169.254.1.1:51820")
	sink := &sinkBind{sent: map[netip.AddrPort]int{}, in: make(chan received, 1)}
	b := newLimitedBind(sink, HandshakeLimit{Burst: 3, Interval: 10 * time.Second, Now: func() time.Time { return now },
		Refuse: func(ap netip.AddrPort) bool { return ap == refused }}, slog.New(slog.DiscardHandler))
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	init := message(device.MessageInitiationType, device.MessageInitiationSize)
	send := func(to netip.AddrPort, msgs ...[]byte) {
		if err := b.Send(msgs, &conn.StdNetEndpoint{AddrPort: to}); err != nil {
			t.Fatal(err)
		}
	}
	// 20 peers at the silent address (other ports), each retrying every
	// 5 s for 100 s: 420 initiations offered.
	for step := range 21 {
		for port := range 20 {
			send(netip.AddrPortFrom(silent.Addr(), uint16(9+port)), init)
		}
		send(answering, init)
		if step < 20 {
			now = now.Add(5 * time.Second)
		}
		if step == 0 {
			sink.in <- received{response(0), answering}
			if _, err := fns[0]([][]byte{make([]byte, 1500)}, make([]int, 1), make([]conn.Endpoint, 1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var toSilent int
	for ap, n := range sink.sent {
		if ap.Addr() == silent.Addr() {
			toSilent += n
		}
	}
	if want := 3 + 100/10; toSilent > want || toSilent < want-1 {
		t.Errorf("%d initiations reached the silent address in 100 s, want %d (burst 3, then one per 10 s)", toSilent, want)
	}
	if got := sink.sent[answering]; got != 21 {
		t.Errorf("%d of 21 initiations reached the destination that answered", got)
	}
	// Nothing else unlocks a destination: an initiation from it (anyone
	// can forge one), a response with another receiver index, a response
	// from another address than the initiation went to.
	forged := netip.MustParseAddrPort("127.0.0.3:51820")
	recv := func(b []byte, from netip.AddrPort) {
		sink.in <- received{b, from}
		if _, err := fns[0]([][]byte{make([]byte, 1500)}, make([]int, 1), make([]conn.Endpoint, 1)); err != nil {
			t.Fatal(err)
		}
	}
	send(forged, initiation(7))
	recv(init, forged)
	recv(response(8), forged)
	recv(response(7), netip.MustParseAddrPort("127.0.0.3:51821"))
	for i := range 10 {
		send(forged, initiation(uint32(100+i)))
	}
	if got := sink.sent[forged]; got != 3 {
		t.Errorf("%d of 11 initiations reached a destination that never answered an initiation of ours, want the burst (3)", got)
	}
	// The genuine response to one of them does.
	now = now.Add(time.Second)
	recv(response(101), forged) // 7, 100 and 101 went out (the burst)
	for i := range 10 {
		send(forged, initiation(uint32(200+i)))
	}
	if got := sink.sent[forged]; got != 3+10 {
		t.Errorf("%d initiations reached the destination after it answered, want %d", got, 13)
	}
	// Data and responses are not limited; a refused destination gets none.
	data := message(4, 64)
	send(silent, data, data)
	if got := sink.sent[silent]; got < 2 {
		t.Errorf("transport data to the silent destination was dropped (%d sent)", got)
	}
	send(refused, init, data)
	if got := sink.sent[refused]; got != 0 {
		t.Errorf("%d packets reached a refused destination", got)
	}
}
