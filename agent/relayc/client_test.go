package relayc

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/testclock"
)

// runClient starts a Client on creds and returns it with the channel of
// its OnChange reports.
func runClient(t *testing.T, creds func() Credentials, in *inbox, now func() time.Time) (*Client, chan netip.AddrPort) {
	t.Helper()
	changes := make(chan netip.AddrPort, 16)
	c, err := New(Config{
		Credentials:   func(context.Context) (Credentials, error) { return creds(), nil },
		Receive:       in.receive,
		OnChange:      func(a netip.AddrPort) { changes <- a },
		Now:           now,
		ProbeInterval: 100 * time.Millisecond,
		ProbeTimeout:  300 * time.Millisecond,
		ProbeFailures: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(run(c))
	return c, changes
}

// run runs c until the returned stop is called (which waits for it).
func run(c *Client) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func nextChange(t *testing.T, changes chan netip.AddrPort, d time.Duration) netip.AddrPort {
	t.Helper()
	select {
	case a := <-changes:
		return a
	case <-time.After(d):
		t.Fatalf("no relay change reported within %v", d)
		return netip.AddrPort{}
	}
}

// plainPeer is a peer's UDP socket on loopback.
func plainPeer(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	p, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, p.LocalAddr().(*net.UDPAddr).AddrPort()
}

// roundTrip checks a datagram from peer to the relayed address reaches the
// client's Receive, and one from the client reaches peer from there.
func roundTrip(t *testing.T, c *Client, in *inbox, peer *net.UDPConn, relayed netip.AddrPort, tag string) {
	t.Helper()
	pa := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := peer.WriteToUDPAddrPort([]byte(tag+" in"), relayed); err != nil {
		t.Fatal(err)
	}
	if got := in.wait(t, tag+" in", 5*time.Second); got.from != pa {
		t.Fatalf("from %s, want %s", got.from, pa)
	}
	if err := c.WriteTo(context.Background(), []byte(tag+" out"), pa); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != tag+" out" || from != relayed {
		t.Fatalf("peer read %q from %s (%v), want %q from %s", buf[:n], from, err, tag+" out", relayed)
	}
}

// TestNearestThenFailover: of two relays, the client allocates on the one
// with the shorter STUN round trip (the other is 40 ms farther away, and
// listed first), reports its relayed address, and when that relay stops it
// moves to the other, reports the new address and re-permits its peers
// there: a peer reaches it through the second relay without a new Permit.
func TestNearestThenFailover(t *testing.T) {
	ca, _ := testRoots(t)
	far, near := startTURN(t, ca), startTURN(t, ca)
	farProxy := startDelayProxy(t, far.udp, 40*time.Millisecond)
	creds := func() Credentials {
		return Credentials{Username: testUser, Expires: time.Now().Add(time.Hour),
			Servers: []Server{{Name: "far", UDP: farProxy.addr, Password: testPass}, {Name: "near", UDP: near.udp, Password: testPass}}}
	}
	in := newInbox()
	c, changes := runClient(t, creds, in, nil)
	first := nextChange(t, changes, 10*time.Second)
	if st := c.Status(); st.Server != near.udp || st.Relayed != first || len(st.Probes) != 2 {
		t.Fatalf("allocated on %s (status %+v), want the nearer relay %s", st.Server, st, near.udp)
	}
	peer, pa := plainPeer(t)
	if err := c.Permit(context.Background(), []netip.Addr{pa.Addr()}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, in, peer, first, "near")

	_ = near.srv.Close()
	second := nextChange(t, changes, 10*time.Second)
	if !second.IsValid() || second == first {
		t.Fatalf("after the relay stopped: change to %s (was %s)", second, first)
	}
	if st := c.Status(); st.Server != farProxy.addr || st.Relayed != second {
		t.Fatalf("status after failover %+v, want relay %s", st, farProxy.addr)
	}
	roundTrip(t, c, in, peer, second, "far")
}

// TestCredentialsRenewed: at two thirds of the credentials' life (an
// injected clock moved forward), the client fetches new ones and renews
// its allocation on them (a Refresh under the new credentials): the
// relayed address stays, no change is reported, and it still relays.
func TestCredentialsRenewed(t *testing.T) {
	ca, _ := testRoots(t)
	r := startTURN(t, ca)
	clock := &testclock.Clock{}
	var fetches atomic.Int32
	creds := func() Credentials {
		fetches.Add(1)
		return Credentials{Username: testUser, Expires: clock.Now().Add(time.Hour),
			Servers: []Server{{UDP: r.udp, Password: testPass}}}
	}
	in := newInbox()
	c, changes := runClient(t, creds, in, clock.Now)
	first := nextChange(t, changes, 10*time.Second)
	clock.Advance(30 * time.Minute)
	select {
	case a := <-changes:
		t.Fatalf("re-allocated (%s) at half the credentials' life", a)
	case <-time.After(500 * time.Millisecond):
	}
	before := c.Status().CredentialsExpire
	clock.Advance(11 * time.Minute)
	waitRenewed(t, c, before)
	select {
	case a := <-changes:
		t.Fatalf("re-allocated (%s, was %s) at renewal instead of renewing", a, first)
	default:
	}
	if n := fetches.Load(); n != 2 || c.RelayedAddr() != first {
		t.Fatalf("%d fetches, relayed %s then %s", n, first, c.RelayedAddr())
	}
	peer, pa := plainPeer(t)
	if err := c.Permit(context.Background(), []netip.Addr{pa.Addr()}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, in, peer, first, "renewed")
}

// waitRenewed waits until c's credentials expire after before.
func waitRenewed(t *testing.T, c *Client, before time.Time) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !c.Status().CredentialsExpire.After(before) {
		if time.Now().After(deadline) {
			t.Fatalf("credentials not renewed (expire %s, status %+v)", before, c.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTLSWhereUDPIsBlocked: a relay whose UDP port does not answer is
// reached over TLS (verified against the pinned roots), and relays both
// ways from there.
func TestTLSWhereUDPIsBlocked(t *testing.T) {
	ca, roots := testRoots(t)
	r := startTURN(t, ca)
	blocked, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer blocked.Close() // holds the port, never answers
	creds := func() Credentials {
		return Credentials{Username: testUser, Expires: time.Now().Add(time.Hour),
			Servers: []Server{{UDP: blocked.LocalAddr().String(), TLS: r.tls, Password: testPass}}}
	}
	in := newInbox()
	changes := make(chan netip.AddrPort, 4)
	c, err := New(Config{Credentials: func(context.Context) (Credentials, error) { return creds(), nil },
		TLS: TLSConfig(roots, nil), Receive: in.receive, OnChange: func(a netip.AddrPort) { changes <- a },
		ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	relayed := nextChange(t, changes, 10*time.Second)
	if st := c.Status(); st.Transport != TLS || st.Server != r.tls {
		t.Fatalf("status %+v, want TLS to %s", st, r.tls)
	}
	peer, pa := plainPeer(t)
	if err := c.Permit(context.Background(), []netip.Addr{pa.Addr()}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, in, peer, relayed, "tls")
}

// relay is the path layer's Relay interface (PATH-DESIGN.md seam 4), which
// both a Client and a single Allocation implement.
type relay interface {
	RelayedAddr() netip.AddrPort
	WriteTo(ctx context.Context, b []byte, to netip.AddrPort) error
	Permit(ctx context.Context, addrs []netip.Addr) error
}

var _, _ relay = (*Client)(nil), (*Allocation)(nil)

// TestCredentialFetchFailsAtRenewal: when the CA does not answer at
// renewal time, the client keeps the allocation it has (its credentials
// are still good) and keeps watching it: when that relay stops during the
// CA's outage, it moves to the other relay on the credentials it holds,
// and renews that allocation on fresh ones once the CA answers again.
func TestCredentialFetchFailsAtRenewal(t *testing.T) {
	ca, _ := testRoots(t)
	r1, r2 := startTURN(t, ca), startTURN(t, ca)
	clock := &testclock.Clock{}
	var down atomic.Bool
	var fetches atomic.Int32
	changes := make(chan netip.AddrPort, 16)
	in := newInbox()
	c, err := New(Config{
		Credentials: func(context.Context) (Credentials, error) {
			fetches.Add(1)
			if down.Load() {
				return Credentials{}, errors.New("CA unreachable")
			}
			return Credentials{Username: testUser, Expires: clock.Now().Add(time.Hour), Servers: []Server{{UDP: r1.udp, Password: testPass}, {UDP: r2.udp, Password: testPass}}}, nil
		},
		Receive: in.receive, OnChange: func(a netip.AddrPort) { changes <- a }, Now: clock.Now,
		ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer run(c)()
	first := nextChange(t, changes, 10*time.Second)
	down.Store(true)
	clock.Advance(41 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for fetches.Load() < 2 || !strings.Contains(c.Status().LastError, "CA unreachable") {
		if time.Now().After(deadline) {
			t.Fatalf("no failed fetch at renewal time (%d fetches, status %+v)", fetches.Load(), c.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := c.RelayedAddr(); got != first || !strings.Contains(c.Status().LastError, "CA unreachable") {
		t.Fatalf("after a failed fetch: relayed %s (was %s), status %+v", got, first, c.Status())
	}
	peer, pa := plainPeer(t)
	if err := c.Permit(context.Background(), []netip.Addr{pa.Addr()}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, in, peer, first, "kept")
	used, other := r1, r2
	if c.Status().Server == r2.udp {
		used, other = r2, r1
	}
	_ = used.srv.Close()
	second := nextChange(t, changes, 10*time.Second)
	if st := c.Status(); second == first || st.Server != other.udp {
		t.Fatalf("relay stopped during the CA's outage: relayed %s (was %s), status %+v", second, first, st)
	}
	roundTrip(t, c, in, peer, second, "moved")
	before := c.Status().CredentialsExpire
	down.Store(false)
	waitRenewed(t, c, before)
	if got := c.RelayedAddr(); got != second {
		t.Fatalf("once the CA answers: relayed %s (was %s)", got, second)
	}
}

// TestRunEndsEveryAllocation: when Run returns, the allocation in use and
// one still retiring after a credential renewal that moved it (the fresh
// credentials no longer list its relay) are both released at the relays
// (they delete them), not left to their lifetime.
func TestRunEndsEveryAllocation(t *testing.T) {
	ca, _ := testRoots(t)
	r1, r2 := startTURN(t, ca), startTURN(t, ca)
	clock := &testclock.Clock{}
	changes := make(chan netip.AddrPort, 4)
	var fetches atomic.Int32
	c, err := New(Config{
		Credentials: func(context.Context) (Credentials, error) {
			r := r1
			if fetches.Add(1) > 1 {
				r = r2
			}
			return Credentials{Username: testUser, Expires: clock.Now().Add(time.Hour), Servers: []Server{{UDP: r.udp, Password: testPass}}}, nil
		},
		OnChange: func(a netip.AddrPort) { changes <- a }, Now: clock.Now, ProbeInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(c)
	nextChange(t, changes, 10*time.Second)
	clock.Advance(41 * time.Minute)
	nextChange(t, changes, 10*time.Second) // the first allocation now retires for ~19 minutes
	stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, d := 0, 0
		for _, r := range []*turnServer{r1, r2} {
			r.mu.Lock()
			n, d = n+len(r.allocated), d+len(r.deleted)
			r.mu.Unlock()
		}
		if n == 2 && d == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d allocations made, %d released after Run returned; want 2 and 2", n, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNewMappingReplacesTheAllocation: when the relay starts seeing the
// agent from another address (its NAT dropped the mapping, or the laptop
// moved), the allocation made from the old one is lost; after CheckNow
// (the agent's network-change hook) the client notices on the next ping,
// allocates anew and reports the new relayed address, without waiting for
// a refresh to fail.
func TestNewMappingReplacesTheAllocation(t *testing.T) {
	ca, _ := testRoots(t)
	r := startTURN(t, ca)
	nat := startDelayProxy(t, r.udp, 0)
	changes := make(chan netip.AddrPort, 4)
	in := newInbox()
	c, err := New(Config{
		Credentials: func(context.Context) (Credentials, error) {
			return Credentials{Username: testUser, Expires: time.Now().Add(time.Hour), Servers: []Server{{UDP: nat.addr, Password: testPass}}}, nil
		},
		Receive: in.receive, OnChange: func(a netip.AddrPort) { changes <- a },
		ProbeInterval: time.Hour, // only CheckNow pings
	})
	if err != nil {
		t.Fatal(err)
	}
	defer run(c)()
	first := nextChange(t, changes, 10*time.Second)
	nat.remap()
	c.CheckNow()
	second := nextChange(t, changes, 5*time.Second)
	if second == first || !second.IsValid() {
		t.Fatalf("after the mapping changed: relayed %s (was %s), status %+v", second, first, c.Status())
	}
	peer, pa := plainPeer(t)
	if err := c.Permit(context.Background(), []netip.Addr{pa.Addr()}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, in, peer, second, "remapped")
}

// TestPermitsBounded: the addresses a Client keeps to re-permit stay at
// MaxPermits however many are permitted; the most recent are kept.
func TestPermitsBounded(t *testing.T) {
	c, err := New(Config{Credentials: func(context.Context) (Credentials, error) { return Credentials{}, errors.New("unused") }})
	if err != nil {
		t.Fatal(err)
	}
	var addrs []netip.Addr
	for i := range MaxPermits + 100 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	for i := 0; i < len(addrs); i += 50 {
		if err := c.Permit(context.Background(), addrs[i:min(i+50, len(addrs))]); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.permits) != MaxPermits {
		t.Fatalf("%d addresses kept, want %d", len(c.permits), MaxPermits)
	}
	if _, ok := c.permits[addrs[len(addrs)-1]]; !ok {
		t.Fatal("the latest address was forgotten")
	}
	if _, ok := c.permits[addrs[0]]; ok {
		t.Fatal("the oldest address was kept")
	}
}
