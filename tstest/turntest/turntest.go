// Package turntest drives a TURN relay from tests with a real pion/turn
// client, over UDP or over TLS (ALPN stun.turn), and checks what it
// delivers: a datagram, or nothing at all.
package turntest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/turn/v4"

	"github.com/certmesh/certmesh/internal/wire"
)

// Client is a pion TURN client, its socket (or TLS connection) to the
// relay, and once allocated its relayed socket.
type Client struct {
	*turn.Client
	Conn    net.PacketConn
	Relayed net.PacketConn
}

// Dial starts a client of the relay at server: over UDP if tlsCfg is nil,
// else over TLS (its NextProtos set to wire.RelayALPN, which the relay
// must answer). It stops when the test ends.
func Dial(t testing.TB, server string, tlsCfg *tls.Config, user, pass string) *Client {
	t.Helper()
	if tlsCfg != nil {
		tc, err := net.Dial("tcp", server)
		if err != nil {
			t.Fatalf("TCP to the relay at %s: %v", server, err)
		}
		return DialConn(t, server, TLSConn(t, tc, tlsCfg), user, pass)
	}
	uc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return DialConn(t, server, uc, user, pass)
}

// TLSConn runs TURN's TLS handshake on c (ALPN wire.RelayALPN, which the
// relay must answer) and returns the connection as a TURN client's socket.
func TLSConn(t testing.TB, c net.Conn, tlsCfg *tls.Config) net.PacketConn {
	t.Helper()
	cfg := tlsCfg.Clone()
	cfg.NextProtos = []string{wire.RelayALPN}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS to the relay at %s: %v", c.RemoteAddr(), err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != wire.RelayALPN {
		t.Fatalf("the relay at %s negotiated ALPN %q, want %q", c.RemoteAddr(), p, wire.RelayALPN)
	}
	return turn.NewSTUNConn(tc)
}

// DialConn starts a client of the relay at server on conn (a UDP socket,
// or TLSConn's).
func DialConn(t testing.TB, server string, conn net.PacketConn, user, pass string) *Client {
	t.Helper()
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: conn, Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = conn.Close() })
	return &Client{Client: c, Conn: conn}
}

// Allocate asks for an allocation (returning the relay's refusal).
func (c *Client) Allocate() error {
	relayed, err := c.Client.Allocate()
	if err == nil {
		c.Relayed = relayed
	}
	return err
}

// MustAllocate dials and allocates, failing the test if the relay refuses.
func MustAllocate(t testing.TB, server string, tlsCfg *tls.Config, user, pass string) *Client {
	t.Helper()
	c := Dial(t, server, tlsCfg, user, pass)
	if err := c.Allocate(); err != nil {
		t.Fatalf("allocation at %s for %q: %v", server, user, err)
	}
	t.Cleanup(func() { _ = c.Relayed.Close() })
	return c
}

// ExpectDatagram reads one datagram from pc and checks it and its sender.
func ExpectDatagram(t testing.TB, pc net.PacketConn, want []byte, from net.Addr) {
	t.Helper()
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, src, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("waiting for %q: %v", want, err)
	}
	if !bytes.Equal(buf[:n], want) || src.String() != from.String() {
		t.Fatalf("got %q from %s, want %q from %s", buf[:n], src, want, from)
	}
}

// ExpectNothing checks that pc receives no datagram for a while (a relay
// delivers one in well under that on loopback).
func ExpectNothing(t testing.TB, pc net.PacketConn, what string) {
	t.Helper()
	_ = pc.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
	buf := make([]byte, 1500)
	n, src, err := pc.ReadFrom(buf)
	var ne net.Error
	if err == nil {
		t.Fatalf("%s: a datagram was delivered: %q from %s", what, buf[:n], src)
	} else if !errors.As(err, &ne) || !ne.Timeout() {
		t.Logf("%s: read ended with %v (nothing delivered)", what, err)
	}
}

// Exchange relays one datagram each way between a's and b's allocations.
func Exchange(t testing.TB, a, b *Client) {
	t.Helper()
	// b lets a's relayed address in; a's first write creates a's permission.
	if err := b.CreatePermission(a.Relayed.LocalAddr()); err != nil {
		t.Fatalf("permission: %v", err)
	}
	if _, err := a.Relayed.WriteTo([]byte("ping from a"), b.Relayed.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	ExpectDatagram(t, b.Relayed, []byte("ping from a"), a.Relayed.LocalAddr())
	if _, err := b.Relayed.WriteTo([]byte("pong from b"), a.Relayed.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	ExpectDatagram(t, a.Relayed, []byte("pong from b"), b.Relayed.LocalAddr())
}
