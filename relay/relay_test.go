package relay

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/relaycred"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/pion/turn/v4"
)

const testRealm = "corp.example"

var (
	devA = certs.DeviceID("aaaaaaaaaaaaaaaa")
	devB = certs.DeviceID("bbbbbbbbbbbbbbbb")
)

// fixture is a relay on loopback (relayed IP 127.0.0.1) with an injected
// clock, and optionally its TLS port behind an HTTPS server's ALPN.
type fixture struct {
	t     *testing.T
	r     *Relay
	key   relaycred.Key
	clock *testclock.Clock
	https *httptest.Server
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newFixture(t *testing.T, tweak ...func(*Config)) *fixture {
	t.Helper()
	key, err := relaycred.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, key: key, clock: testclock.At(time.Now())}
	cfg := Config{UDP: []string{"127.0.0.1:0", "127.0.0.1:0"}, Key: key, Realm: testRealm, Now: f.clock.Now, Logger: testLogger(t)}
	for _, fn := range tweak {
		fn(&cfg)
	}
	if f.r, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.r.Close() })
	return f
}

// serveTLS puts the relay behind an HTTPS server's ALPN, as certmesh-server
// does on its HTTPS port.
func (f *fixture) serveTLS() {
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.TLS = &tls.Config{NextProtos: []string{wire.RelayALPN, "http/1.1"}}
	ts.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){wire.RelayALPN: f.r.TLSNextProto()}
	ts.StartTLS()
	f.https = ts
	f.t.Cleanup(func() { _ = f.r.Close(); ts.Close() })
}

// cred mints a credential for dev that expires life from the fixture's now.
func (f *fixture) cred(dev certs.DeviceID, life time.Duration) (user, pass string) {
	u := relaycred.Username{Device: dev, Expires: f.clock.Now().Add(life).Truncate(time.Second)}
	return u.String(), f.key.Password(u.String())
}

// turnClient is a pion/turn client with its allocation.
type turnClient struct {
	c       *turn.Client
	relayed net.PacketConn
}

// dial starts a pion TURN client over UDP (tls false) or over TLS.
func (f *fixture) dial(user, pass string, overTLS bool) *turn.Client {
	f.t.Helper()
	server := f.r.UDPAddrs()[0].String()
	var conn net.PacketConn
	if overTLS {
		pool := x509.NewCertPool()
		pool.AddCert(f.https.Certificate())
		tc, err := tls.Dial("tcp", f.https.Listener.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{wire.RelayALPN}, ServerName: "example.com"})
		if err != nil {
			f.t.Fatal(err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != wire.RelayALPN {
			f.t.Fatalf("ALPN negotiated %q, want %q", p, wire.RelayALPN)
		}
		conn, server = turn.NewSTUNConn(tc), f.https.Listener.Addr().String()
	} else {
		uc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			f.t.Fatal(err)
		}
		conn = uc
	}
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: pass, LoggerFactory: pionLogs{testLogger(f.t)}})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close(); _ = conn.Close() })
	return c
}

// allocate dials and allocates, failing the test if it cannot.
func (f *fixture) allocate(dev certs.DeviceID, life time.Duration, overTLS bool) *turnClient {
	f.t.Helper()
	user, pass := f.cred(dev, life)
	c := f.dial(user, pass, overTLS)
	relayed, err := c.Allocate()
	if err != nil {
		f.t.Fatalf("allocation for %s: %v", dev, err)
	}
	f.t.Cleanup(func() { _ = relayed.Close() })
	return &turnClient{c: c, relayed: relayed}
}

// expectDatagram reads one datagram from pc and checks it and its sender.
func expectDatagram(t *testing.T, pc net.PacketConn, want []byte, from net.Addr) {
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

// expectNothing checks that pc receives no datagram for a while (the
// relay would have delivered one in well under that on loopback).
func expectNothing(t *testing.T, pc net.PacketConn, what string) {
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

// exchange relays one datagram each way between a and b's allocations.
func exchange(t *testing.T, a, b *turnClient) {
	t.Helper()
	// b lets a's relayed address in; a's first write creates a's permission.
	if err := b.c.CreatePermission(a.relayed.LocalAddr()); err != nil {
		t.Fatalf("permission: %v", err)
	}
	if _, err := a.relayed.WriteTo([]byte("ping from a"), b.relayed.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	expectDatagram(t, b.relayed, []byte("ping from a"), a.relayed.LocalAddr())
	if _, err := b.relayed.WriteTo([]byte("pong from b"), a.relayed.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	expectDatagram(t, a.relayed, []byte("pong from b"), b.relayed.LocalAddr())
}

func TestRelayUDPBothWays(t *testing.T) {
	f := newFixture(t)
	a, b := f.allocate(devA, 5*time.Minute, false), f.allocate(devB, 5*time.Minute, false)
	if got := a.relayed.LocalAddr().(*net.UDPAddr).IP.String(); got != "127.0.0.1" {
		t.Fatalf("relayed address %s, want the relayed IP 127.0.0.1", a.relayed.LocalAddr())
	}
	exchange(t, a, b)
	if n := f.r.Allocations(); n != 2 {
		t.Fatalf("%d allocations, want 2", n)
	}
}

func TestRelayTLSBothWays(t *testing.T) {
	f := newFixture(t)
	f.serveTLS()
	a, b := f.allocate(devA, 5*time.Minute, true), f.allocate(devB, 5*time.Minute, false)
	exchange(t, a, b)
	c := f.allocate(certs.DeviceID("cccccccccccccccc"), 5*time.Minute, true)
	exchange(t, a, c) // TLS to TLS
}

// TestRelayAnswersSTUNOnTwoPorts: a Binding request to either UDP port
// returns the client's address (no credentials needed for STUN).
func TestRelayAnswersSTUNOnTwoPorts(t *testing.T) {
	f := newFixture(t)
	c := f.dial("", "", false)
	addrs := f.r.UDPAddrs()
	if len(addrs) != 2 || addrs[0].Port() == addrs[1].Port() {
		t.Fatalf("UDP addresses %v: want two ports", addrs)
	}
	var mapped []string
	for _, a := range addrs {
		m, err := c.SendBindingRequestTo(net.UDPAddrFromAddrPort(a))
		if err != nil {
			t.Fatalf("STUN binding to %s: %v", a, err)
		}
		mapped = append(mapped, m.String())
	}
	if mapped[0] != mapped[1] {
		t.Fatalf("loopback has no NAT, yet the two ports saw %v", mapped)
	}
}
