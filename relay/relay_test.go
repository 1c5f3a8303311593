package relay

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/relaycred"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/turntest"
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

// dial starts a pion TURN client over UDP, or over TLS through the HTTPS
// server's ALPN.
func (f *fixture) dial(user, pass string, overTLS bool) *turntest.Client {
	f.t.Helper()
	if !overTLS {
		return turntest.Dial(f.t, f.r.UDPAddrs()[0].String(), nil, user, pass)
	}
	pool := x509.NewCertPool()
	pool.AddCert(f.https.Certificate())
	return turntest.Dial(f.t, f.https.Listener.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "example.com"}, user, pass)
}

// allocate dials and allocates, failing the test if it cannot.
func (f *fixture) allocate(dev certs.DeviceID, life time.Duration, overTLS bool) *turntest.Client {
	f.t.Helper()
	user, pass := f.cred(dev, life)
	c := f.dial(user, pass, overTLS)
	if err := c.Allocate(); err != nil {
		f.t.Fatalf("allocation for %s: %v", dev, err)
	}
	f.t.Cleanup(func() { _ = c.Relayed.Close() })
	return c
}

func TestRelayUDPBothWays(t *testing.T) {
	f := newFixture(t)
	a, b := f.allocate(devA, 5*time.Minute, false), f.allocate(devB, 5*time.Minute, false)
	if got := a.Relayed.LocalAddr().(*net.UDPAddr).IP.String(); got != "127.0.0.1" {
		t.Fatalf("relayed address %s, want the relayed IP 127.0.0.1", a.Relayed.LocalAddr())
	}
	turntest.Exchange(t, a, b)
	if n := f.r.Allocations(); n != 2 {
		t.Fatalf("%d allocations, want 2", n)
	}
}

func TestRelayTLSBothWays(t *testing.T) {
	f := newFixture(t)
	f.serveTLS()
	a, b := f.allocate(devA, 5*time.Minute, true), f.allocate(devB, 5*time.Minute, false)
	turntest.Exchange(t, a, b)
	c := f.allocate(certs.DeviceID("cccccccccccccccc"), 5*time.Minute, true)
	turntest.Exchange(t, a, c) // TLS to TLS
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

// TestRelayListensOnIPv6: a relay listening on IPv6 answers STUN there
// (netcheck over IPv6) and relays from IPv4 sockets on its relayed IP.
func TestRelayListensOnIPv6(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.UDP, c.RelayIP = []string{"[::1]:0", "127.0.0.1:0"}, netip.MustParseAddr("127.0.0.1")
	})
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{Conn: pc})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	m, err := c.SendBindingRequestTo(net.UDPAddrFromAddrPort(f.r.UDPAddrs()[0]))
	if err != nil || !strings.HasPrefix(m.String(), "[::1]:") {
		t.Fatalf("STUN over IPv6: %v, %v", m, err)
	}
	if f.r.RelayIP() != netip.MustParseAddr("127.0.0.1") || f.r.bindIP != netip.IPv4Unspecified() {
		t.Fatalf("relayed IP %s, relay sockets on %s", f.r.RelayIP(), f.r.bindIP)
	}
	if ip, err := chooseRelayIP(netip.Addr{}, netip.MustParseAddr("::1")); err == nil && !ip.Is4() {
		t.Fatalf("relayed IP %s chosen for an IPv6 listen address: allocations are IPv4", ip)
	}
}
