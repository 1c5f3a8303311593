package path

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// testSTUNServer answers Binding requests on loopback with the address they
// came from; with answerFrom set, it answers from that socket instead (an
// attacker who sees the requests but is not the server).
func testSTUNServer(t *testing.T, answerFrom *net.UDPConn, mapped netip.AddrPort) netip.AddrPort {
	t.Helper()
	c := sendRaw(t, netip.AddrPort{})
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil || req.Type != stun.BindingRequest {
				continue
			}
			m := from
			if mapped.IsValid() {
				m = mapped
			}
			resp, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: m.Addr().AsSlice(), Port: int(m.Port())}, stun.Fingerprint)
			if err != nil {
				continue
			}
			out := c
			if answerFrom != nil {
				out = answerFrom
			}
			out.WriteToUDPAddrPort(resp.Raw, from)
		}
	}()
	return unmap(c.LocalAddr().(*net.UDPAddr).AddrPort())
}

// TestSTUNReflexiveAddress: Binding requests go out of the WireGuard
// socket and the answer names it; an answer from another address than the
// server asked (though to the right transaction) and an unsolicited one
// are not believed.
func TestSTUNReflexiveAddress(t *testing.T) {
	a := newTestNode(t, 1)
	liar := netip.MustParseAddrPort("198.51.100.66:666")
	elsewhere := sendRaw(t, netip.AddrPort{})
	good := testSTUNServer(t, nil, netip.AddrPort{})
	spoofed := testSTUNServer(t, elsewhere, liar)
	var mu sync.Mutex
	var reported [][]netip.AddrPort
	m := startManager(t, a, Config{STUNServers: []netip.AddrPort{spoofed, good}, OnReflexive: func(ap []netip.AddrPort) {
		mu.Lock()
		reported = append(reported, ap)
		mu.Unlock()
	}})
	unsolicited, err := stun.Build(stun.TransactionID, stun.BindingSuccess,
		&stun.XORMappedAddress{IP: liar.Addr().AsSlice(), Port: int(liar.Port())})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		sendRaw(t, a.addr(), unsolicited.Raw)
	}
	waitFor(t, 5*time.Second, "a reflexive address", func() bool { return len(m.Reflexive()) > 0 })
	waitFor(t, 5*time.Second, "the spoofed server to be asked again", func() bool { return a.bind.Counters().STUN >= 14 })
	if got := m.Reflexive(); !slices.Equal(got, []netip.AddrPort{a.addr()}) {
		t.Fatalf("reflexive %v, want only %v", got, a.addr())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 1 || !slices.Equal(reported[0], []netip.AddrPort{a.addr()}) {
		t.Fatalf("OnReflexive calls %v, want one with %v", reported, a.addr())
	}
	if a.spy.leaked.Load() != 0 {
		t.Fatal("STUN reached wireguard-go")
	}
}
