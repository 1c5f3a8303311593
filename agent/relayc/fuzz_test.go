package relayc

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"

	"github.com/certmesh/certmesh/internal/pionlog"
)

// countingHandler records what dispatch delivered.
type countingHandler struct{ chans, datas int }

func (h *countingHandler) channelData(_ uint16, b []byte) {
	if len(b) > maxDatagram {
		panic("payload beyond the datagram")
	}
	h.chans++
}

func (h *countingHandler) data(from netip.AddrPort, b []byte) {
	if !from.IsValid() {
		panic("Data indication delivered without a peer address")
	}
	h.datas++
}

// FuzzDispatch feeds what a relay (or anyone) sends to the agent's relay
// socket through the demultiplexer: ChannelData, Data indications, STUN
// answers and junk must never panic or deliver a payload out of bounds.
func FuzzDispatch(f *testing.F) {
	f.Add([]byte{0x40, 0x00, 0x00, 0x03, 'a', 'b', 'c'})
	f.Add([]byte{0x40, 0x00, 0xff, 0xff, 'a'})
	f.Add([]byte{0x50, 0x00, 0x00, 0x00})
	m, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodData, stun.ClassIndication),
		peerAddr(netip.MustParseAddrPort("192.0.2.1:5")), rawData("x"), stun.Fingerprint)
	f.Add(m.Raw)
	b, _ := stun.Build(stun.TransactionID, stun.BindingSuccess, stun.Fingerprint)
	f.Add(b.Raw)
	l := &link{kind: UDP, done: make(chan struct{})}
	var err error
	if l.tc, err = newTestTURNClient(); err != nil {
		f.Fatal(err)
	}
	h := &countingHandler{}
	var hh handler = h
	l.h.Store(&hh)
	f.Fuzz(func(t *testing.T, in []byte) {
		l.dispatch(in)
	})
}

// newTestTURNClient is a pion TURN client on a socket nobody reads, for
// dispatch to hand STUN answers to.
func newTestTURNClient() (*turn.Client, error) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return turn.NewClient(&turn.ClientConfig{Conn: pc, LoggerFactory: pionlog.Factory{Log: slog.New(slog.DiscardHandler)}})
}
