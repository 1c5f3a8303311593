package relay

import (
	"math/big"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/relaycred"
	"github.com/certmesh/certmesh/tstest/turntest"
	"github.com/pion/stun/v3"
)

// sendIndication sends a raw TURN Send indication (data to peer through
// the allocation of this 5-tuple, if there is one) from c's socket.
func sendIndication(t *testing.T, c *turntest.Client, relayUDP net.Addr, peer net.Addr, data []byte) {
	t.Helper()
	pa := peer.(*net.UDPAddr)
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		xorPeer{pa.IP, pa.Port}, stun.RawAttribute{Type: stun.AttrData, Value: data})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo(m.Raw, relayUDP); err != nil {
		t.Fatal(err)
	}
}

type xorPeer struct {
	ip   net.IP
	port int
}

func (p xorPeer) AddTo(m *stun.Message) error {
	return stun.XORMappedAddress{IP: p.ip, Port: p.port}.AddToAs(m, stun.AttrXORPeerAddress)
}

// TestRelayRefusesBadCredentials: forged, expired, over-long, malformed
// credentials and those minted under another relay's key allocate nothing,
// and a Send indication from their socket delivers nothing to a peer that
// lets everyone in.
func TestRelayRefusesBadCredentials(t *testing.T) {
	f := newFixture(t)
	b := f.allocate(devB, 10*time.Minute, false)
	otherKey := relaycred.DeriveKey(f.key, "another relay")
	exp := func(d time.Duration) string {
		return relaycred.Username{Device: devA, Expires: f.clock.Now().Add(d).Truncate(time.Second)}.String()
	}
	good := exp(5 * time.Minute)
	cases := []struct{ name, user, pass string }{
		{"forged password", good, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{"other relay's key", good, otherKey.Password(good)},
		{"password of another username", good, f.key.Password(exp(6 * time.Minute))},
		{"expired", exp(-time.Second), f.key.Password(exp(-time.Second))},
		{"expires now", exp(0), f.key.Password(exp(0))},
		{"lifetime over the bound", exp(2 * time.Hour), f.key.Password(exp(2 * time.Hour))},
		{"malformed username", "alice", f.key.Password("alice")},
		{"bad device ID", "c1:9999999999:ALICE", f.key.Password("c1:9999999999:ALICE")},
		{"empty", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := b.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err != nil {
				t.Fatal(err)
			}
			c := f.dial(tc.user, tc.pass, false)
			if err := c.Allocate(); err == nil {
				t.Fatalf("allocation granted to %q", tc.user)
			}
			if n := f.r.Allocations(); n != 1 {
				t.Fatalf("%d allocations, want only b's", n)
			}
			sendIndication(t, c, net.UDPAddrFromAddrPort(f.r.UDPAddrs()[0]), b.Relayed.LocalAddr(), []byte("injected"))
			turntest.ExpectNothing(t, b.Relayed, tc.name)
		})
	}
}

// TestRelayExpiredCredentialStopsRelaying: an allocation made with a
// credential relays both ways until the credential expires, and nothing
// after (the permissions and the allocation would otherwise live on for
// minutes); every authenticated request with it is refused.
func TestRelayExpiredCredentialStopsRelaying(t *testing.T) {
	f := newFixture(t)
	a, b := f.allocate(devA, 2*time.Minute, false), f.allocate(devB, 30*time.Minute, false)
	turntest.Exchange(t, a, b)
	f.clock.Advance(2*time.Minute + time.Second)
	if _, err := a.Relayed.WriteTo([]byte("after expiry from a"), b.Relayed.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	turntest.ExpectNothing(t, b.Relayed, "a's datagram after a's credential expired")
	if _, err := b.Relayed.WriteTo([]byte("after expiry to a"), a.Relayed.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	turntest.ExpectNothing(t, a.Relayed, "a datagram to a's allocation after its credential expired")
	if err := a.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil {
		t.Fatal("CreatePermission with an expired credential succeeded")
	}
	user, pass := f.cred(devA, -time.Second)
	if err := f.dial(user, pass, false).Allocate(); err == nil {
		t.Fatal("allocation with an expired credential")
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.r.Allocations() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d allocations: a's expired allocation was not removed", f.r.Allocations())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRelayCutEndsDevice: Cut (what the embedded relay does when the CA
// revokes a device) stops relaying for the device's allocations at once.
func TestRelayCutEndsDevice(t *testing.T) {
	f := newFixture(t)
	a, b := f.allocate(devA, 5*time.Minute, false), f.allocate(devB, 5*time.Minute, false)
	turntest.Exchange(t, a, b)
	if n := f.r.Cut(devA); n != 1 {
		t.Fatalf("cut %d allocations, want 1", n)
	}
	if _, err := b.Relayed.WriteTo([]byte("to the revoked device"), a.Relayed.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	turntest.ExpectNothing(t, a.Relayed, "datagram to a cut device")
	if _, err := a.Relayed.WriteTo([]byte("from the revoked device"), b.Relayed.LocalAddr()); err == nil {
		turntest.ExpectNothing(t, b.Relayed, "datagram from a cut device")
	}
	// Its credentials, though not expired, allocate nothing any more.
	user, pass := f.cred(devA, 5*time.Minute)
	if err := f.dial(user, pass, false).Allocate(); err == nil {
		t.Fatal("a cut device allocated again with unexpired credentials")
	}
	f.allocate(devB, 5*time.Minute, false) // others still can
}

// TestRelayRefusesHostDestinations: an allocation cannot send to the relay
// host itself (its loopback, a port of the relayed IP that is not a live
// allocation) nor to link-local addresses (cloud metadata) or the
// operator's deny list, while the same write to a peer's allocation is
// delivered.
func TestRelayRefusesHostDestinations(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.DenyPeers = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} })
	a, b := f.allocate(devA, 5*time.Minute, false), f.allocate(devB, 5*time.Minute, false)
	turntest.Exchange(t, a, b) // control: delivery works and would be seen
	for _, listen := range []string{"127.0.0.1:0", "127.0.0.2:0"} {
		svc, err := net.ListenPacket("udp4", listen)
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close()
		_, _ = a.Relayed.WriteTo([]byte("to a service on the relay host"), svc.LocalAddr())
		turntest.ExpectNothing(t, svc, "datagram to "+svc.LocalAddr().String())
	}
	for _, to := range []string{"169.254.169.254:80", "192.0.2.7:53", "224.0.0.251:5353", "0.0.0.0:9"} {
		if err := a.CreatePermission(net.UDPAddrFromAddrPort(netip.MustParseAddrPort(to))); err == nil {
			t.Errorf("permission for %s granted", to)
		}
	}
}

func TestPeerPolicy(t *testing.T) {
	p := &peerPolicy{relayIP: netip.MustParseAddr("203.0.113.5"), own: map[netip.Addr]bool{netip.MustParseAddr("10.1.2.3"): true},
		deny: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
	for addr, want := range map[string]bool{
		"203.0.113.5": true, "::ffff:203.0.113.5": true, // the relayed IP: live allocations only (port checked)
		"198.18.0.1": true, "2001:db8::1": true, "10.9.9.9": true,
		"10.1.2.3": false, "127.0.0.1": false, "127.8.0.1": false, "::1": false, "0.0.0.0": false, "::": false,
		"169.254.169.254": false, "fe80::1": false, "224.0.0.1": false, "ff02::1": false, "255.255.255.255": false,
		"198.51.100.9": false,
	} {
		if got := p.permit(netip.MustParseAddr(addr)); got != want {
			t.Errorf("permit(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestRelayQuotaPerDevice(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxPerDevice = 2 })
	f.allocate(devA, 5*time.Minute, false)
	f.allocate(devA, 5*time.Minute, false)
	user, pass := f.cred(devA, 5*time.Minute)
	err := f.dial(user, pass, false).Allocate()
	if err == nil {
		t.Fatal("third allocation of one device granted over a quota of 2")
	} else if !strings.Contains(err.Error(), "486") && !strings.Contains(strings.ToLower(err.Error()), "quota") {
		t.Logf("refused with %v", err)
	}
	f.allocate(devB, 5*time.Minute, false) // other devices are not affected
}

// TestRelayBoundsTLSConns: beyond MaxTLSConns a TLS connection is closed
// before pion reads from it; one closing makes room again.
func TestRelayBoundsTLSConns(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxTLSConns = 1 })
	f.serveTLS()
	a := f.allocate(devA, 5*time.Minute, true)
	user, pass := f.cred(devB, 5*time.Minute)
	if err := f.dial(user, pass, true).Allocate(); err == nil {
		t.Fatal("a second TLS connection allocated over a limit of 1")
	}
	_ = a.Conn.Close() // its TLS connection
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := f.dial(user, pass, true).Allocate(); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no room after the first connection closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRelayRevokedSerialEndsAllocation: SetRevoked (what a standalone
// relay does with each new CRL) ends at once the allocations made with a
// credential issued against a revoked certificate, and refuses such
// credentials from then on, though unexpired; a credential of the same
// device under another (current) certificate still allocates.
func TestRelayRevokedSerialEndsAllocation(t *testing.T) {
	f := newFixture(t)
	cred := func(serial int64) (string, string) {
		u := relaycred.Username{Device: devA, Expires: f.clock.Now().Add(5 * time.Minute).Truncate(time.Second), Serial: big.NewInt(serial)}
		return u.String(), f.key.Password(u.String())
	}
	user, pass := cred(0x51)
	a := f.dial(user, pass, false)
	if err := a.Allocate(); err != nil {
		t.Fatal(err)
	}
	b := f.allocate(devB, 5*time.Minute, false)
	turntest.Exchange(t, a, b)
	if n := f.r.SetRevoked([]*big.Int{big.NewInt(0x99)}); n != 0 {
		t.Fatalf("a CRL without its serial ended %d allocations", n)
	}
	turntest.Exchange(t, a, b)
	if n := f.r.SetRevoked([]*big.Int{big.NewInt(0x99), big.NewInt(0x51)}); n != 1 {
		t.Fatalf("ended %d allocations, want 1", n)
	}
	if _, err := b.Relayed.WriteTo([]byte("to the revoked certificate"), a.Relayed.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	turntest.ExpectNothing(t, a.Relayed, "datagram to an allocation under a revoked certificate")
	if err := f.dial(user, pass, false).Allocate(); err == nil {
		t.Fatal("a credential under a revoked certificate allocated again")
	}
	u2, p2 := cred(0x52)
	if err := f.dial(u2, p2, false).Allocate(); err != nil {
		t.Fatalf("a credential under another certificate: %v", err)
	}
}
