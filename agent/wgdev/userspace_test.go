package wgdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/logbuf"
)

type node struct {
	dev    *Device
	key    PrivateKey
	v4, v6 netip.Addr
	logs   *logbuf.Buffer
}

const echoPort = 7000

// newNode opens a userspace device with overlay addresses 100.80.0.<i> and
// fd7a:115c:a1e0::<i>, and runs a TCP echo server on both.
func newNode(t *testing.T, i int) *node {
	t.Helper()
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	n := &node{
		key:  k,
		v4:   netip.AddrFrom4([4]byte{100, 80, 0, byte(i)}),
		v6:   netip.MustParseAddr(fmt.Sprintf("fd7a:115c:a1e0::%d", i)),
		logs: new(logbuf.Buffer),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.dev, err = Open(ctx, Config{
		Mode:       Userspace,
		Addresses:  []netip.Prefix{netip.PrefixFrom(n.v4, 32), netip.PrefixFrom(n.v6, 128)},
		PrivateKey: k,
		Logger:     slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.dev.Close(); err != nil {
			t.Error(err)
		}
		assertNoSecret(t, fmt.Sprintf("node %d logs", i), n.logs.String(), n.key)
	})
	if n.dev.ListenPort() == 0 {
		t.Fatal("no listen port")
	}
	for _, a := range []netip.Addr{n.v4, n.v6} {
		ln, err := n.dev.Net().ListenTCPAddrPort(netip.AddrPortFrom(a, echoPort))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); io.Copy(c, c) }()
			}
		}()
	}
	return n
}

func (n *node) endpoint() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(n.dev.ListenPort()))
}

func (n *node) pub() certs.WireGuardKey { return n.key.Public() }

// addPeer makes `to` a peer of `from` with the given allowed IPs (default:
// to's real /32 and /128).
func addPeer(t *testing.T, from, to *node, allowed ...netip.Prefix) {
	t.Helper()
	if allowed == nil {
		allowed = []netip.Prefix{netip.PrefixFrom(to.v4, 32), netip.PrefixFrom(to.v6, 128)}
	}
	if err := from.dev.UpsertPeer(Peer{PublicKey: to.pub(), AllowedIPs: allowed, Endpoint: to.endpoint()}); err != nil {
		t.Fatal(err)
	}
}

// echo dials dst's echo server through from's netstack and checks a round trip.
func echo(from *node, dst netip.Addr, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := from.dev.Net().DialContext(ctx, "tcp", netip.AddrPortFrom(dst, echoPort).String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	msg := []byte("hello through the mesh from " + from.v4.String())
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo mismatch: %q", got)
	}
	return nil
}

func peerOf(t *testing.T, n *node, k certs.WireGuardKey) (PeerStats, bool) {
	t.Helper()
	ps, err := n.dev.Peers()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.PublicKey == k {
			return p, true
		}
	}
	return PeerStats{}, false
}

func TestUserspaceEchoAndStats(t *testing.T) {
	a, b := newNode(t, 1), newNode(t, 2)
	addPeer(t, a, b)
	addPeer(t, b, a)

	for _, tc := range []struct {
		name string
		from *node
		dst  netip.Addr
	}{
		{"a->b v4", a, b.v4}, {"b->a v4", b, a.v4},
		{"a->b v6", a, b.v6}, {"b->a v6", b, a.v6},
	} {
		if err := echo(tc.from, tc.dst, 10*time.Second); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}

	for _, side := range []struct{ self, other *node }{{a, b}, {b, a}} {
		p, ok := peerOf(t, side.self, side.other.pub())
		if !ok {
			t.Fatalf("peer %v missing", side.other.pub())
		}
		if p.LastHandshake.IsZero() || time.Since(p.LastHandshake) > time.Minute {
			t.Errorf("last handshake = %v", p.LastHandshake)
		}
		if p.RxBytes == 0 || p.TxBytes == 0 {
			t.Errorf("rx=%d tx=%d", p.RxBytes, p.TxBytes)
		}
		if p.Endpoint != side.other.endpoint() {
			t.Errorf("endpoint = %v, want %v", p.Endpoint, side.other.endpoint())
		}
		want := []netip.Prefix{netip.PrefixFrom(side.other.v4, 32), netip.PrefixFrom(side.other.v6, 128)}
		if !sameSet(p.AllowedIPs, want) {
			t.Errorf("allowed IPs = %v, want %v", p.AllowedIPs, want)
		}
	}
	if logs := a.logs.String(); logs == "" {
		t.Error("no debug logs from wireguard-go")
	}
}

func TestRemovePeer(t *testing.T) {
	a, b := newNode(t, 1), newNode(t, 2)
	addPeer(t, a, b)
	addPeer(t, b, a)
	if err := echo(a, b.v4, 10*time.Second); err != nil {
		t.Fatalf("before removal: %v", err)
	}
	if err := b.dev.RemovePeer(a.pub()); err != nil {
		t.Fatal(err)
	}
	if _, ok := peerOf(t, b, a.pub()); ok {
		t.Fatal("removed peer still listed")
	}
	if err := echo(a, b.v4, 2*time.Second); err == nil {
		t.Fatal("a->b still works after b removed a")
	} else {
		t.Logf("a->b after removal: %v", err)
	}
	if err := echo(b, a.v4, 2*time.Second); err == nil {
		t.Fatal("b->a still works after b removed a")
	} else {
		t.Logf("b->a after removal: %v", err)
	}
	// Removing again is fine.
	if err := b.dev.RemovePeer(a.pub()); err != nil {
		t.Fatal(err)
	}
}

func TestAllowedIPsEnforced(t *testing.T) {
	a, b := newNode(t, 1), newNode(t, 2)
	addPeer(t, a, b)
	// b believes a owns 100.80.0.99, not a's real 100.80.0.1.
	addPeer(t, b, a, netip.MustParsePrefix("100.80.0.99/32"))

	if err := echo(a, b.v4, 2*time.Second); err == nil {
		t.Fatal("a->b succeeded although a's source address is not in b's allowed IPs for a")
	} else {
		t.Logf("a->b with wrong allowed IPs: %v", err)
	}
	// The tunnel itself works: it is the allowed-IPs check that drops.
	p, ok := peerOf(t, b, a.pub())
	if !ok || p.LastHandshake.IsZero() || p.RxBytes == 0 {
		t.Fatalf("expected a completed handshake with a on b: %+v", p)
	}

	// Replacing b's view of a with the right address lets traffic through,
	// and replaces (does not add to) the allowed IPs.
	addPeer(t, b, a, netip.PrefixFrom(a.v4, 32))
	if err := echo(a, b.v4, 10*time.Second); err != nil {
		t.Fatalf("after fixing allowed IPs: %v", err)
	}
	p, _ = peerOf(t, b, a.pub())
	if want := []netip.Prefix{netip.PrefixFrom(a.v4, 32)}; !sameSet(p.AllowedIPs, want) {
		t.Fatalf("allowed IPs = %v, want %v", p.AllowedIPs, want)
	}
	// IPv6 was not allowed.
	if err := echo(a, b.v6, 2*time.Second); err == nil {
		t.Fatal("a->b over IPv6 succeeded without an allowed IPv6 prefix")
	}
}

func TestUpsertDoesNotDisturbOthersAndKeyRotation(t *testing.T) {
	a, b, c := newNode(t, 1), newNode(t, 2), newNode(t, 3)
	addPeer(t, a, b)
	addPeer(t, b, a)
	addPeer(t, a, c)
	addPeer(t, c, a)
	if err := echo(a, b.v4, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	before, _ := peerOf(t, a, b.pub())

	// Updating c (keepalive, allowed IPs) leaves b's session alone.
	if err := a.dev.UpsertPeer(Peer{PublicKey: c.pub(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(c.v4, 32)}, PersistentKeepalive: 25 * time.Second}); err != nil {
		t.Fatal(err)
	}
	pc, _ := peerOf(t, a, c.pub())
	if pc.PersistentKeepalive != 25*time.Second || pc.Endpoint != c.endpoint() {
		t.Fatalf("c after upsert: %+v", pc)
	}
	after, _ := peerOf(t, a, b.pub())
	if !after.LastHandshake.Equal(before.LastHandshake) || after.TxBytes < before.TxBytes {
		t.Fatalf("b disturbed: before %+v after %+v", before, after)
	}
	if err := echo(a, c.v4, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	// A device refuses itself as a peer.
	if err := a.dev.UpsertPeer(Peer{PublicKey: a.pub()}); err == nil {
		t.Fatal("accepted own key as peer")
	}

	// Rotate a's key; b learns the new key, connectivity resumes.
	oldPub := a.pub()
	newKey, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.dev.SetPrivateKey(newKey); err != nil {
		t.Fatal(err)
	}
	a.key = newKey
	if a.dev.PublicKey() != newKey.Public() {
		t.Fatal("PublicKey not updated")
	}
	if err := b.dev.RemovePeer(oldPub); err != nil {
		t.Fatal(err)
	}
	addPeer(t, b, a)
	if err := echo(a, b.v4, 10*time.Second); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
}

func TestSOCKS5(t *testing.T) {
	a, b := newNode(t, 1), newNode(t, 2)
	addPeer(t, a, b)
	addPeer(t, b, a)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	names := func(name string) (netip.Addr, bool, error) { // the agent's resolver
		switch name {
		case "b.corp.example":
			return b.v4, true, nil
		case "gone.corp.example":
			return netip.Addr{}, true, errors.New("no verified peer is named gone.corp.example")
		}
		return netip.Addr{}, false, nil
	}
	go func() { served <- a.dev.ServeSOCKS5(ctx, ln, names) }()

	// CONNECT to b's echo server by IPv4 address.
	c := socksConnect(t, ln.Addr().String(), append([]byte{1}, append(b.v4.AsSlice(), echoPort>>8, echoPort&0xff)...), 0)
	msg := []byte("via socks")
	c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo via SOCKS5: %q, %v", got, err)
	}

	// A mesh name is resolved by the mesh's resolver, and CONNECT goes to
	// the address it gives.
	byName := func(name string, port uint16, rep byte) net.Conn {
		return socksConnect(t, ln.Addr().String(), append(append([]byte{3, byte(len(name))}, name...), byte(port>>8), byte(port)), rep)
	}
	cn := byName("b.corp.example", echoPort, 0)
	cn.Write(msg)
	if _, err := io.ReadFull(cn, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo via SOCKS5 by mesh name: %q, %v", got, err)
	}
	cn.Close()
	// Other host names are refused (reply 4, host unreachable), never
	// resolved; so is a mesh name no verified peer holds.
	byName("example.com", 80, 4).Close()
	byName("gone.corp.example", 80, 4).Close()

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("ServeSOCKS5: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeSOCKS5 did not return after cancel")
	}
	// The open client connection was closed on shutdown.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(got); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client connection not closed on shutdown: %v", err)
	}
}

// socksConnect performs a no-auth SOCKS5 CONNECT with the given address
// (ATYP, address, port) and expects reply code rep.
func socksConnect(t *testing.T, proxy string, addr []byte, rep byte) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	hello := make([]byte, 2)
	if _, err := io.ReadFull(c, hello); err != nil || hello[0] != 5 || hello[1] != 0 {
		t.Fatalf("SOCKS5 method reply %v, %v", hello, err)
	}
	if _, err := c.Write(append([]byte{5, 1, 0}, addr...)); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatal(err)
	}
	if head[1] != rep {
		t.Fatalf("SOCKS5 reply code %d, want %d", head[1], rep)
	}
	var rest int
	switch head[3] {
	case 1:
		rest = 4 + 2
	case 4:
		rest = 16 + 2
	default:
		t.Fatalf("unexpected bound address type %d", head[3])
	}
	if _, err := io.ReadFull(c, make([]byte, rest)); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Time{})
	return c
}

func TestSOCKS5RequiresUserspace(t *testing.T) {
	d := &Device{mode: KernelTUN}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := d.ServeSOCKS5(context.Background(), ln, nil); err == nil {
		t.Fatal("kernel-mode device served SOCKS5")
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	k, _ := GeneratePrivateKey()
	ok := Config{Mode: Userspace, PrivateKey: k, Addresses: []netip.Prefix{netip.MustParsePrefix("100.80.0.1/32")}}
	for name, mut := range map[string]func(*Config){
		"no mode":        func(c *Config) { c.Mode = 0 },
		"no key":         func(c *Config) { c.PrivateKey = PrivateKey{} },
		"no addresses":   func(c *Config) { c.Addresses = nil },
		"bad port":       func(c *Config) { c.ListenPort = 70000 },
		"bad mtu":        func(c *Config) { c.MTU = 100 },
		"kernel no name": func(c *Config) { c.Mode = KernelTUN },
		"bad name":       func(c *Config) { c.Mode = KernelTUN; c.InterfaceName = "../etc" },
		"uapi no name":   func(c *Config) { c.UAPI = true },
	} {
		c := ok
		mut(&c)
		if d, err := Open(context.Background(), c); err == nil {
			d.Close()
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

func sameSet(a, b []netip.Prefix) bool {
	byAddr := func(x, y netip.Prefix) int {
		if c := x.Addr().Compare(y.Addr()); c != 0 {
			return c
		}
		return x.Bits() - y.Bits()
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, byAddr)
	slices.SortFunc(b, byAddr)
	return slices.Equal(a, b)
}
