package relayc

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// delayProxy forwards UDP between clients and a server, delaying every
// datagram by d each way: a relay that is farther away.
type delayProxy struct {
	addr string

	mu    sync.Mutex
	backs map[netip.AddrPort]*net.UDPConn
}

// remap drops every upstream socket, as a NAT that lost its mappings (or a
// laptop on a new network): the server sees each client from a new port.
func (p *delayProxy) remap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for from, b := range p.backs {
		_ = b.Close()
		delete(p.backs, from)
	}
}

func startDelayProxy(t *testing.T, server string, d time.Duration) *delayProxy {
	t.Helper()
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv := netip.MustParseAddrPort(server)
	p := &delayProxy{addr: front.LocalAddr().String(), backs: map[netip.AddrPort]*net.UDPConn{}}
	mu, backs := &p.mu, p.backs
	t.Cleanup(func() {
		_ = front.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, b := range backs {
			_ = b.Close()
		}
	})
	go func() {
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			mu.Lock()
			back, ok := backs[from]
			if !ok {
				if back, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
					mu.Unlock()
					return
				}
				backs[from] = back
				go func() {
					rb := make([]byte, maxDatagram)
					for {
						n, _, err := back.ReadFromUDPAddrPort(rb)
						if err != nil {
							return
						}
						b := append([]byte(nil), rb[:n]...)
						time.AfterFunc(d, func() { _, _ = front.WriteToUDPAddrPort(b, from) })
					}
				}()
			}
			mu.Unlock()
			b := append([]byte(nil), buf[:n]...)
			time.AfterFunc(d, func() { _, _ = back.WriteToUDPAddrPort(b, srv) })
		}
	}()
	return p
}
