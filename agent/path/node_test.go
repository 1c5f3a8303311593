package path

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
)

// testNode is a real userspace WireGuard device whose bind is a path Bind,
// with a spy above it that sees exactly what wireguard-go (through wgdev's
// handshake limiter) is handed, and a firewall below it.
type testNode struct {
	dev     *wgdev.Device
	key     wgdev.PrivateKey
	bind    *Bind
	spy     *spyBind
	filter  *filterBind // between the socket and the path Bind
	mgr     *Manager
	overlay netip.Addr
}

const overlayPort = 9000

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("PATH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newTestNode(t *testing.T, i int) *testNode {
	t.Helper()
	k, err := wgdev.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{key: k, overlay: netip.AddrFrom4([4]byte{100, 90, 0, byte(i)})}
	n.bind = NewBind(testLogger(t))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	n.dev, err = wgdev.Open(ctx, wgdev.Config{
		Mode:       wgdev.Userspace,
		Addresses:  []netip.Prefix{netip.PrefixFrom(n.overlay, 32)},
		PrivateKey: k,
		Logger:     testLogger(t),
		WrapBind: func(inner conn.Bind) conn.Bind {
			n.filter = newFilterBind(inner)
			n.spy = &spyBind{Bind: n.bind.Wrap(n.filter)}
			return n.spy
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.dev.Close() })
	return n
}

func (n *testNode) pub() certs.WireGuardKey { return n.key.Public() }

// addr is the node's WireGuard socket on loopback.
func (n *testNode) addr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(n.dev.ListenPort()))
}

// admit makes peer a WireGuard peer of n, at endpoint ep (zero: none).
func (n *testNode) admit(t *testing.T, peer *testNode, ep netip.AddrPort) {
	t.Helper()
	err := n.dev.UpsertPeer(wgdev.Peer{PublicKey: peer.pub(),
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(peer.overlay, 32)}, Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
}

// overlayRoundTrip sends UDP datagrams from a to b inside the tunnel until
// one arrives (or timeout), and reports whether one did.
func overlayRoundTrip(t *testing.T, a, b *testNode, timeout time.Duration) error {
	t.Helper()
	ln, err := b.dev.Net().ListenUDPAddrPort(netip.AddrPortFrom(b.overlay, overlayPort))
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := a.dev.Net().DialUDPAddrPort(netip.AddrPortFrom(a.overlay, 0), netip.AddrPortFrom(b.overlay, overlayPort))
	if err != nil {
		return err
	}
	defer c.Close()
	msg := fmt.Sprintf("through the tunnel from %v", a.overlay)
	buf := make([]byte, 256)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		ln.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		m, err := ln.Read(buf)
		if err == nil && string(buf[:m]) == msg {
			return nil
		}
	}
	return fmt.Errorf("no datagram from %v reached %v within %v", a.overlay, b.overlay, timeout)
}

// spyBind sits above the path Bind and counts what its receive functions
// return that is not WireGuard: what would reach wireguard-go.
type spyBind struct {
	conn.Bind
	wireguard, leaked atomic.Int64

	mu         sync.Mutex
	initiators map[uint32]bool // sender indices of the initiations wireguard-go sent
}

// Send notes the handshake initiations wireguard-go sends (each new one
// has a new sender index; the path layer's own sends do not pass here).
func (s *spyBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	for _, p := range bufs {
		if isInitiationMsg(p) {
			s.mu.Lock()
			if s.initiators == nil {
				s.initiators = map[uint32]bool{}
			}
			s.initiators[binary.LittleEndian.Uint32(p[4:8])] = true
			s.mu.Unlock()
		}
	}
	return s.Bind.Send(bufs, ep)
}

// initiations is how many handshake initiations wireguard-go has made.
func (s *spyBind) initiations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.initiators)
}

func (s *spyBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, p, err := s.Bind.Open(port)
	for i, fn := range fns {
		fns[i] = func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(bufs, sizes, eps)
			for j := range n {
				switch {
				case sizes[j] == 0:
				case classify(bufs[j][:sizes[j]]) == classWireGuard:
					s.wireguard.Add(1)
				default:
					s.leaked.Add(1)
				}
			}
			return n, err
		}
	}
	return fns, p, err
}

// sendRaw sends datagrams to ap from a fresh loopback socket.
func sendRaw(t *testing.T, ap netip.AddrPort, pkts ...[]byte) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, p := range pkts {
		if _, err := c.WriteToUDPAddrPort(p, ap); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
