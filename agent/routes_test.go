package agent

import (
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// fakeKernel records the prefixes routed into the tunnel.
type fakeKernel struct {
	mu sync.Mutex
	on map[netip.Prefix]bool
}

func (k *fakeKernel) AddRoute(p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.on[p] = true
	return nil
}

func (k *fakeKernel) DelRoute(p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.on, p)
	return nil
}

func (k *fakeKernel) routes() []netip.Prefix {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []netip.Prefix
	for p := range k.on {
		out = append(out, p)
	}
	return out
}

// routeHarness is the pipeline harness with the route stage in it, a
// recording kernel and a switch per peer for whether its path works.
type routeHarness struct {
	*harness
	kernel *fakeKernel
	routes *routeStage
	down   map[certs.WireGuardKey]bool
}

func newRouteHarness(t *testing.T, accept bool) *routeHarness {
	t.Helper()
	h := newHarness(t)
	rh := &routeHarness{harness: h, kernel: &fakeKernel{on: map[netip.Prefix]bool{}}, down: map[certs.WireGuardKey]bool{}}
	self := h.m.self
	clock, log := func() time.Time { return h.now }, slog.New(slog.DiscardHandler)
	device := newDeviceStage(h.plane, self.WireGuardKey, log)
	rh.routes = newRouteStage(newPathStage(endpointPolicy{}, device, log, clock), device, rh.kernel, accept, log, clock)
	rh.routes.alive = func(k certs.WireGuardKey) bool { return !rh.down[k] }
	h.m = newPeerSet(rh.routes, &addrIndex{}, nil, self, 0, log, clock)
	h.v.peers = h.m
	return rh
}

// router is a peer certified for routes, relayed as serving claimed.
func (rh *routeHarness) router(t *testing.T, name string, certified []string, claimed ...string) (certs.MachineProfile, wire.Peer) {
	t.Helper()
	p := rh.pki.NewProfile(t, name)
	for _, r := range certified {
		p.Routes = append(p.Routes, netip.MustParsePrefix(r))
	}
	w := rh.peer(t, string(p.DeviceID), p)
	w.Routes = claimed
	return p, w
}

// allowed is what the data plane holds as p's AllowedIPs beyond its
// certified addresses.
func (rh *routeHarness) allowed(t *testing.T, p certs.MachineProfile) []netip.Prefix {
	t.Helper()
	wp, ok := rh.plane.get(p.WireGuardKey)
	if !ok {
		return nil
	}
	var out []netip.Prefix
	for _, a := range wp.AllowedIPs {
		if a.Bits() != a.Addr().BitLen() {
			out = append(out, a)
		}
	}
	return out
}

var lanA = netip.MustParsePrefix("10.20.0.0/24")

func prefixes(ps ...netip.Prefix) []netip.Prefix { return ps }

// TestRouteInstalledOnlyFromCertificate: a peer certified for a route and
// relayed as serving it gets it in its AllowedIPs and the host routes it
// into the tunnel; a route the coordinator relays that the certificate
// lacks is refused, counted under route-uncertified, and nowhere in the
// data plane or the host's routes; the peer itself stays.
func TestRouteInstalledOnlyFromCertificate(t *testing.T) {
	rh := newRouteHarness(t, true)
	r, w := rh.router(t, "router", []string{"10.20.0.0/24"}, "10.20.0.0/24", "10.99.0.0/16", "192.168.7.0/24", "not-a-prefix")
	rh.v.handle(upsert(w))
	if got := rh.allowed(t, r); !slices.Equal(got, prefixes(lanA)) {
		t.Fatalf("router's routed AllowedIPs %v, want only %v", got, lanA)
	}
	if got := rh.kernel.routes(); !slices.Equal(got, prefixes(lanA)) {
		t.Fatalf("host routes into the tunnel %v, want only %v", got, lanA)
	}
	st, rej, counts := rh.routes.status()
	if counts[ReasonRouteUncertified] != 2 || counts[ReasonRouteMalformed] != 1 || len(rej) != 3 {
		t.Fatalf("route refusals %v %v, want 2 uncertified and 1 malformed", counts, rej)
	}
	if len(st.Installed) != 1 || st.Installed[0].Via != r.DeviceID {
		t.Fatalf("installed %+v", st.Installed)
	}
	if _, ok := rh.plane.get(r.WireGuardKey); !ok {
		t.Fatal("the router itself was dropped for its uncertified claims")
	}
}

// TestRouteNeedsAcceptAndClaim: without --accept-routes nothing is
// installed (uncertified claims are still refused); a certified route the
// router does not say it serves is not used.
func TestRouteNeedsAcceptAndClaim(t *testing.T) {
	rh := newRouteHarness(t, false)
	r, w := rh.router(t, "router", []string{"10.20.0.0/24"}, "10.20.0.0/24", "10.99.0.0/16")
	rh.v.handle(upsert(w))
	if got := rh.allowed(t, r); len(got) != 0 || len(rh.kernel.routes()) != 0 {
		t.Fatalf("without accept: AllowedIPs %v, host routes %v", got, rh.kernel.routes())
	}
	if _, _, counts := rh.routes.status(); counts[ReasonRouteUncertified] != 1 {
		t.Fatalf("counts %v, want the uncertified claim refused", counts)
	}

	rh = newRouteHarness(t, true)
	r, w = rh.router(t, "router", []string{"10.20.0.0/24"}) // claims nothing
	rh.v.handle(upsert(w))
	if got := rh.allowed(t, r); len(got) != 0 || len(rh.kernel.routes()) != 0 {
		t.Fatalf("unclaimed route installed: %v %v", got, rh.kernel.routes())
	}
	w.Routes = []string{"10.20.0.0/24"} // now it serves it
	rh.v.handle(upsert(w))
	if got := rh.allowed(t, r); !slices.Equal(got, prefixes(lanA)) {
		t.Fatalf("claimed route: %v", got)
	}
	w.Routes = nil // and withdraws it
	rh.v.handle(upsert(w))
	if got := rh.allowed(t, r); len(got) != 0 || len(rh.kernel.routes()) != 0 {
		t.Fatalf("withdrawn route still installed: %v %v", got, rh.kernel.routes())
	}
}

// TestRouteEvictionRemovesRoutes: a router removed from the peer set
// (revoked, expired) takes its routes with it at once.
func TestRouteEvictionRemovesRoutes(t *testing.T) {
	rh := newRouteHarness(t, true)
	r, w := rh.router(t, "router", []string{"10.20.0.0/24"}, "10.20.0.0/24")
	rh.v.handle(upsert(w))
	if len(rh.kernel.routes()) != 1 {
		t.Fatal("route not installed")
	}
	tx := rh.m.begin()
	rh.m.dropLocked(rh.m.peers[r.DeviceID], "revoked")
	tx.commit()
	if _, ok := rh.plane.get(r.WireGuardKey); ok || len(rh.kernel.routes()) != 0 {
		t.Fatalf("after eviction: peer configured %v, host routes %v", ok, rh.kernel.routes())
	}
	if st, _, _ := rh.routes.status(); len(st.Installed) != 0 {
		t.Fatalf("installed after eviction: %+v", st.Installed)
	}
}

// TestRouteFailover: two routers certified for one prefix; only the one
// with the lower device ID holds it; when its path stops working the
// other takes it at the next sweep; when it comes back it takes it back
// only after RouteHoldUp of working without a break.
func TestRouteFailover(t *testing.T) {
	rh := newRouteHarness(t, true)
	r1, w1 := rh.router(t, "r1", []string{"10.20.0.0/24"}, "10.20.0.0/24")
	r2, w2 := rh.router(t, "r2", []string{"10.20.0.0/24"}, "10.20.0.0/24")
	if r2.DeviceID < r1.DeviceID {
		r1, r2, w1, w2 = r2, r1, w2, w1
	}
	rh.v.handle(upsert(w2)) // the higher ID first: it holds the prefix alone, and works
	rh.m.sweep()
	rh.v.handle(upsert(w1))
	rh.m.sweep()
	holds := func(want, other certs.MachineProfile, when string) {
		t.Helper()
		if got := rh.allowed(t, want); !slices.Equal(got, prefixes(lanA)) {
			t.Fatalf("%s: %s holds %v, want %v", when, want.Hostname, got, lanA)
		}
		if got := rh.allowed(t, other); len(got) != 0 {
			t.Fatalf("%s: %s holds %v too", when, other.Hostname, got)
		}
	}
	// r2 was in use alone and works: r1 takes over after the hold.
	holds(r2, r1, "before r1 held up")
	rh.now = rh.now.Add(RouteHoldUp)
	rh.m.sweep()
	holds(r1, r2, "r1 up for the hold")

	rh.down[r1.WireGuardKey] = true
	rh.now = rh.now.Add(time.Second)
	rh.m.sweep()
	holds(r2, r1, "r1's path dead")

	// r1 flaps: back, then gone again before the hold: r2 keeps it.
	rh.down[r1.WireGuardKey] = false
	rh.now = rh.now.Add(time.Second)
	rh.m.sweep()
	holds(r2, r1, "r1 just back")
	rh.now = rh.now.Add(RouteHoldUp / 2)
	rh.down[r1.WireGuardKey] = true
	rh.m.sweep()
	rh.down[r1.WireGuardKey] = false
	rh.now = rh.now.Add(time.Second)
	rh.m.sweep()
	rh.now = rh.now.Add(RouteHoldUp / 2)
	rh.m.sweep()
	holds(r2, r1, "r1 flapping")
	rh.now = rh.now.Add(RouteHoldUp)
	rh.m.sweep()
	holds(r1, r2, "r1 back for the hold")

	// r1 evicted: r2 at once, without waiting for a sweep.
	tx := rh.m.begin()
	rh.m.dropLocked(rh.m.peers[r1.DeviceID], "revoked")
	tx.commit()
	holds(r2, r1, "r1 evicted")
	if got := rh.kernel.routes(); !slices.Equal(got, prefixes(lanA)) {
		t.Fatalf("host routes %v", got)
	}
}

// TestRoutePrimaryIsDeterministic: agents that learn the routers in
// different orders pick the same one (the lowest device ID) at start.
func TestRoutePrimaryIsDeterministic(t *testing.T) {
	rh := newRouteHarness(t, true)
	r1, w1 := rh.router(t, "r1", []string{"10.20.0.0/24"}, "10.20.0.0/24")
	r2, w2 := rh.router(t, "r2", []string{"10.20.0.0/24"}, "10.20.0.0/24")
	rh.v.handle(&wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{w2, w1}})
	low := r1
	if r2.DeviceID < r1.DeviceID {
		low = r2
	}
	if got := rh.allowed(t, low); !slices.Equal(got, prefixes(lanA)) {
		t.Fatalf("the lowest device ID holds %v", got)
	}
}

// TestExitNodeRoutes: with an exit node asked for by hostname, only that
// peer's certified default routes go into its AllowedIPs (another exit
// node and a peer claiming them uncertified get none, and --accept-routes
// is not needed); the host's default routes into the tunnel stay when the
// exit node is evicted.
func TestExitNodeRoutes(t *testing.T) {
	rh := newRouteHarness(t, false)
	rh.routes.exit = "exit1"
	for _, r := range exitRoutes {
		rh.kernel.on[r] = true
	}
	exitRoutesText := []string{"0.0.0.0/0", "::/0"}
	e1, w1 := rh.router(t, "exit1", exitRoutesText, exitRoutesText...)
	e2, w2 := rh.router(t, "exit2", exitRoutesText, exitRoutesText...)
	liar, w3 := rh.router(t, "liar", nil, exitRoutesText...)
	for _, w := range []wire.Peer{w1, w2, w3} {
		rh.v.handle(upsert(w))
	}
	if got := rh.allowed(t, e1); !sameSet(got, exitRoutes) {
		t.Fatalf("the exit node holds %v, want %v", got, exitRoutes)
	}
	for _, p := range []certs.MachineProfile{e2, liar} {
		if got := rh.allowed(t, p); len(got) != 0 {
			t.Fatalf("%s holds %v", p.Hostname, got)
		}
	}
	tx := rh.m.begin()
	rh.m.dropLocked(rh.m.peers[e1.DeviceID], "revoked")
	tx.commit()
	if got := rh.kernel.routes(); !sameSet(got, exitRoutes) {
		t.Fatalf("after the exit node went, host routes into the tunnel %v, want the default routes kept", got)
	}
	if got := rh.allowed(t, e2); len(got) != 0 {
		t.Fatalf("another exit node took over: %v", got)
	}
}
