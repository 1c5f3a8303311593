package path

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// fastTimers are the path layer's timers scaled down so that loss,
// fallback and upgrade happen in a test's time on real sockets.
var fastTimers = Timers{Tick: 20 * time.Millisecond, Heartbeat: 200 * time.Millisecond,
	PingTimeout: time.Second, TrustFor: 600 * time.Millisecond, PunchInterval: 100 * time.Millisecond,
	PunchFor: time.Second, Upgrade: 300 * time.Millisecond, UpgradeDirect: 2 * time.Second,
	STUN: time.Second, STUNRetry: 100 * time.Millisecond}

// startManager runs n's path layer until the test ends.
func startManager(t *testing.T, n *testNode, cfg Config) *Manager {
	t.Helper()
	cfg.Bind, cfg.PrivateKey, cfg.SetEndpoint, cfg.Kick, cfg.Logger = n.bind, n.key, n.dev.SetEndpoint, n.dev.Kick, testLogger(t)
	if cfg.Timers == (Timers{}) {
		cfg.Timers = fastTimers
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	n.mgr = m
	return m
}

// waitPath waits until m's path to peer is of the kind wanted and,
// if endpoint is not "", that endpoint.
func waitPath(t *testing.T, m *Manager, peer certs.WireGuardKey, kind PathKind, endpoint string) PeerStatus {
	t.Helper()
	var st PeerStatus
	waitFor(t, 15*time.Second, "path "+string(kind)+" "+endpoint, func() bool {
		st, _ = m.Peer(peer)
		return st.Path == kind && (endpoint == "" || st.Endpoint == endpoint)
	})
	return st
}

func tunnelBothWays(t *testing.T, a, b *testNode) {
	t.Helper()
	if err := overlayRoundTrip(t, a, b, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := overlayRoundTrip(t, b, a, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestDirectPathFoundAndTunnelWorks: two devices that know nothing of each
// other's endpoint but their candidates; both start probing on admission,
// find the direct path, set it as the WireGuard endpoint, and the
// handshake and packets go through.
func TestDirectPathFoundAndTunnelWorks(t *testing.T) {
	a, b := newTestNode(t, 1), newTestNode(t, 2)
	a.admit(t, b, netip.AddrPort{})
	b.admit(t, a, netip.AddrPort{})
	ma, mb := startManager(t, a, Config{}), startManager(t, b, Config{})
	start := time.Now()
	if err := ma.SetPeer(b.pub(), []Candidate{{Local, b.addr()}}); err != nil {
		t.Fatal(err)
	}
	if err := mb.SetPeer(a.pub(), []Candidate{{Local, a.addr()}}); err != nil {
		t.Fatal(err)
	}
	st := waitPath(t, ma, b.pub(), PathDirect, b.addr().String())
	waitPath(t, mb, a.pub(), PathDirect, a.addr().String())
	tunnelBothWays(t, a, b)
	t.Logf("admitted to first tunnel packet both ways: %v", time.Since(start))
	if st.RTT <= 0 || st.SeenAs != a.addr() || st.Relay.IsValid() {
		t.Fatalf("status %+v: want an RTT, seen as %v, no relay", st, a.addr())
	}
	if ps := peerStats(t, a.dev, b.pub()); ps.Endpoint != b.addr() {
		t.Fatalf("WireGuard endpoint %v, want %v", ps.Endpoint, b.addr())
	}
	if n := a.spy.leaked.Load() + b.spy.leaked.Load(); n != 0 {
		t.Fatalf("%d probes reached wireguard-go", n)
	}
}

// TestRelayThenDirectThenFallback: with the direct path cut, both sides
// settle on the relay (A sends to B's relayed address; B through its
// allocation) and the tunnel works; once the cut is lifted both move to
// direct; when it comes back they fall back to the relay.
func TestRelayThenDirectThenFallback(t *testing.T) {
	a, b := newTestNode(t, 1), newTestNode(t, 2)
	relay := newLoopRelay(t, b.bind, 1)
	b.filter.block(a.addr(), true)
	a.admit(t, b, netip.AddrPort{})
	b.admit(t, a, netip.AddrPort{})
	ma, mb := startManager(t, a, Config{}), startManager(t, b, Config{})
	ra := relay.RelayedAddr()
	if err := ma.SetPeer(b.pub(), []Candidate{{Local, b.addr()}, {RelayKind, ra}}); err != nil {
		t.Fatal(err)
	}
	if err := mb.SetPeer(a.pub(), []Candidate{{Local, a.addr()}}); err != nil {
		t.Fatal(err)
	}
	viaRelay := Route{Relay: 1, Addr: a.addr()}.String()
	check := func(st PeerStatus) {
		t.Helper()
		if st.Relay != ra {
			t.Fatalf("relay in use %v, want %v (status %+v)", st.Relay, ra, st)
		}
	}
	check(waitPath(t, ma, b.pub(), PathRelay, ra.String()))
	check(waitPath(t, mb, a.pub(), PathRelay, viaRelay))
	tunnelBothWays(t, a, b)
	if got := relay.permittedAddrs(); len(got) != 1 || got[0] != a.addr().Addr() {
		t.Fatalf("relay permits %v, want A's address", got)
	}

	b.filter.block(a.addr(), false)
	waitPath(t, ma, b.pub(), PathDirect, b.addr().String())
	waitPath(t, mb, a.pub(), PathDirect, a.addr().String())
	tunnelBothWays(t, a, b)

	b.filter.block(a.addr(), true)
	waitPath(t, ma, b.pub(), PathRelay, ra.String())
	waitPath(t, mb, a.pub(), PathRelay, viaRelay)
	tunnelBothWays(t, a, b)
}

func TestSetPeerRefusesBadCandidates(t *testing.T) {
	a, b := newTestNode(t, 1), newTestNode(t, 2)
	m := startManager(t, a, Config{})
	good := Candidate{Local, b.addr()}
	many := make([]Candidate, MaxCandidates+1)
	for i := range many {
		many[i] = Candidate{Local, netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(1000+i))}
	}
	for name, cs := range map[string][]Candidate{
		"too many":       many,
		"no port":        {good, {Local, netip.MustParseAddrPort("192.0.2.1:0")}},
		"unspecified":    {{Reflexive, netip.MustParseAddrPort("0.0.0.0:5")}},
		"peer-reflexive": {{PeerReflexive, b.addr()}},
		"no kind":        {{0, b.addr()}},
	} {
		if err := m.SetPeer(b.pub(), cs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, ok := m.Peer(b.pub()); ok {
		t.Fatal("a refused peer was admitted")
	}
	if err := m.SetPeer(a.pub(), []Candidate{good}); err == nil {
		t.Fatal("our own key admitted as a peer")
	}
}
