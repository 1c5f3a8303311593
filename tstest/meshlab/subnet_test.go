package meshlab_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// The site of the subnet-router tests: a LAN that no agent runs on but
// its routers, with one plain host on it serving echo.
var siteLAN = netip.MustParsePrefix("10.77.0.0/24")

const (
	siteEchoPort = 7000
	// approvalDeadline bounds how long an approval takes to reach a
	// client: the reissue signal, the renewal, the republish.
	approvalDeadline = 30 * time.Second
	// failoverDeadline bounds a router failover as the clients see it: the
	// path layer calls a path dead after 6.5 s, the next sweep moves the
	// prefix.
	failoverDeadline = 30 * time.Second
)

type site struct {
	lab  *meshlab.NetNSLab
	lan  *netns.LAN
	host *netns.Host // on the LAN only; runs no agent
	echo netip.AddrPort

	seen chan netip.Addr // the sources of the connections the host accepted
}

func newSite(t *testing.T, lab *meshlab.NetNSLab) *site {
	t.Helper()
	netns.RequireCommands(t, "nft")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lan, err := lab.Mesh.Net.AddLAN(ctx, "site", siteLAN)
	if err != nil {
		t.Fatal(err)
	}
	// The host takes the LAN's first address, the routers the next ones.
	h, err := lan.AddHost(ctx, "printer")
	if err != nil {
		t.Fatal(err)
	}
	s := &site{lab: lab, lan: lan, host: h, echo: netip.AddrPortFrom(h.Addr, siteEchoPort), seen: make(chan netip.Addr, 256)}
	ln, err := h.Listen("tcp", s.echo.String())
	if err != nil {
		t.Fatal(err)
	}
	var echo e2e.EchoServer
	echo.Serve(&notifyListener{Listener: ln, seen: s.seen})
	t.Cleanup(echo.Close)
	return s
}

func (s *site) sources() []netip.Addr { return drain(s.seen) }

// addRouter runs an agent on a host joined to the network and the site's
// LAN, asking to route the LAN; it returns the node and its LAN address.
func (s *site) addRouter(t *testing.T, name string, args ...string) (*meshlab.NetNSNode, netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	h, err := s.lab.Mesh.Net.AddHost(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.lan.Join(ctx, h, "eth1")
	if err != nil {
		t.Fatal(err)
	}
	n := s.lab.JoinOn(t, h, meshlab.NodeOptions{}, append([]string{"--advertise-routes", siteLAN.String()}, args...)...).(*meshlab.NetNSNode)
	return n, addr
}

// addClient runs an agent that accepts routes (and args).
func (s *site) addClient(t *testing.T, name string, args ...string) *meshlab.NetNSNode {
	t.Helper()
	h, err := s.lab.Mesh.Net.AddHost(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.lab.JoinOn(t, h, meshlab.NodeOptions{}, append([]string{"--accept-routes"}, args...)...).(*meshlab.NetNSNode)
}

// sitePolicy lets every device reach every device and the site's LAN
// (the starter rule reaches no LAN: policy/doc.go, "Routed traffic").
var sitePolicy = []byte(`{"rules": [
	{"name": "every device to every device", "from": ["*"], "to": ["*"], "ports": ["*"]},
	{"name": "every device to the site", "from": ["*"], "to": ["` + siteLAN.String() + `"], "ports": ["*"]},
]}`)

// allowSite publishes sitePolicy and waits for nodes to hold it.
func (s *site) allowSite(t *testing.T, nodes ...meshlab.Node) {
	t.Helper()
	waitPolicy(t, s.lab.PublishPolicy(t, sitePolicy), nodes...)
}

// approve runs `certmesh-server devices routes approve`.
func (s *site) approve(t *testing.T, n meshlab.Node, prefix netip.Prefix) {
	t.Helper()
	m := s.lab.Mesh
	if _, err := m.ServerCLI(t.Context(), "devices", "routes", "approve", "--state", m.Server.StateDir, string(n.DeviceID()), prefix.String()); err != nil {
		t.Fatal(err)
	}
}

// reach opens a connection from n to the site's host through the mesh.
func (s *site) reach(ctx context.Context, n meshlab.Node) error {
	return meshlab.Reach(ctx, n, s.echo, 2*time.Second)
}

// via returns nil once n routes the site's LAN through router (status,
// WireGuard's AllowedIPs and the kernel route into the tunnel).
func via(ctx context.Context, n, router *meshlab.NetNSNode) error {
	st, err := n.Agent.Status(ctx)
	if err != nil {
		return err
	}
	if len(st.Routes.Installed) != 1 || st.Routes.Installed[0].Prefix != siteLAN || st.Routes.Installed[0].Via != router.DeviceID() {
		return fmt.Errorf("%s routes %+v, want %s via %s", n.Hostname(), st.Routes.Installed, siteLAN, router.Hostname())
	}
	allowed, err := n.Agent.WGAllowedIPs(ctx)
	if err != nil {
		return err
	}
	for k, ips := range allowed {
		if has := slices.Contains(ips, siteLAN.String()); has != (k == router.WireGuardKey().String()) {
			return fmt.Errorf("%s: WireGuard peer %s has AllowedIPs %v", n.Hostname(), k, ips)
		}
	}
	return kernelRoute(ctx, n, true)
}

// kernelRoute checks whether n's host routes the site's LAN into its tunnel.
func kernelRoute(ctx context.Context, n *meshlab.NetNSNode, want bool) error {
	out, err := n.Agent.Host.Run(ctx, "ip", "route", "show", "table", "all", siteLAN.String())
	if err != nil {
		return err
	}
	if got := strings.Contains(out, "dev "+n.Agent.Iface); got != want {
		return fmt.Errorf("%s: route of %s into the tunnel %v, want %v (%q)", n.Hostname(), siteLAN, got, want, out)
	}
	return nil
}

// unrouted returns nil once n has nothing of the site's LAN anywhere.
func unrouted(ctx context.Context, n *meshlab.NetNSNode) error {
	st, err := n.Agent.Status(ctx)
	if err != nil {
		return err
	}
	if len(st.Routes.Installed) != 0 {
		return fmt.Errorf("%s still routes %+v", n.Hostname(), st.Routes.Installed)
	}
	allowed, err := n.Agent.WGAllowedIPs(ctx)
	if err != nil {
		return err
	}
	for k, ips := range allowed {
		if slices.Contains(ips, siteLAN.String()) {
			return fmt.Errorf("%s: WireGuard peer %s still has %s", n.Hostname(), k, siteLAN)
		}
	}
	return kernelRoute(ctx, n, false)
}

// TestSubnetRouter: a router asks to route its LAN; until an admin
// approves, nothing routes it and the client cannot reach the LAN's host.
// The approval reaches the router within seconds (the reissue signal),
// and the client, which accepts routes, reaches the host — which runs no
// agent — by address through the router, which masquerades it (the host
// sees the router's LAN address). A policy that no longer lets the client
// reach the LAN takes the route off it without a restart (route-not-allowed),
// and one allowing it again puts it back. Revoking the router takes its
// route off the client at once: AllowedIPs, kernel route, status.
func TestSubnetRouter(t *testing.T) {
	t.Parallel()
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	s := newSite(t, lab)
	router, routerLAN := s.addRouter(t, "router")
	client := s.addClient(t, "client")
	meshlab.WaitMesh(t, time.Minute, router, client)
	s.allowSite(t, router, client)
	ctx := t.Context()

	if err := s.reach(ctx, client); err == nil {
		t.Fatal("the client reached the LAN before any route was approved")
	}
	if st := router.Status(t); len(st.Routes.Served) != 0 {
		t.Fatalf("the router serves %v before approval", st.Routes.Served)
	}

	start := time.Now()
	s.approve(t, router, siteLAN)
	meshlab.Eventually(t, approvalDeadline, "the client to reach the LAN host through the router", func() error {
		if err := via(ctx, client, router); err != nil {
			return err
		}
		return s.reach(ctx, client)
	})
	t.Logf("approval to first routed connection: %s", time.Since(start).Round(time.Millisecond))
	if st := router.Status(t); !slices.Equal(st.Routes.Served, []netip.Prefix{siteLAN}) || st.Routes.Forwarding != "on" {
		t.Fatalf("router serves %v, forwarding %q", st.Routes.Served, st.Routes.Forwarding)
	}
	if src := s.sources(); len(src) == 0 || slices.ContainsFunc(src, func(a netip.Addr) bool { return a != routerLAN }) {
		t.Fatalf("the LAN host saw connections from %v, want only the router's LAN address %s (masquerade)", src, routerLAN)
	}

	waitPolicy(t, lab.PublishPolicy(t, []byte(`{"rules": [{"from": ["*"], "to": ["*"], "ports": ["*"]}]}`)), router, client)
	meshlab.Eventually(t, 15*time.Second, "the route the policy no longer allows to go", func() error { return unrouted(ctx, client) })
	if n := client.Status(t).RejectedCounts[agent.ReasonRouteNotAllowed]; n == 0 {
		t.Fatal("the route the policy does not allow was not counted as route-not-allowed")
	}
	s.allowSite(t, router, client)
	meshlab.Eventually(t, 15*time.Second, "the route back once the policy allows it", func() error {
		if err := via(ctx, client, router); err != nil {
			return err
		}
		return s.reach(ctx, client)
	})

	start = time.Now()
	lab.RevokeDevice(t, router)
	meshlab.Eventually(t, 15*time.Second, "the revoked router's route to go", func() error { return unrouted(ctx, client) })
	t.Logf("revocation to route gone: %s", time.Since(start).Round(time.Millisecond))
	if err := s.reach(ctx, client); err == nil {
		t.Fatal("the client still reaches the LAN through the revoked router")
	}
}

// TestSubnetRouterFailover: two routers certified for the same LAN; the
// client routes it through the one with the lower device ID. When that
// one's network goes (all it sends is lost), the client moves the route
// to the other within seconds and reaches the LAN host again; when it
// comes back, the client returns to it only after it has worked for the
// hold time, and then stays.
func TestSubnetRouterFailover(t *testing.T) {
	t.Parallel()
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	s := newSite(t, lab)
	r1, _ := s.addRouter(t, "r1")
	r2, _ := s.addRouter(t, "r2")
	if r2.DeviceID() < r1.DeviceID() {
		r1, r2 = r2, r1
	}
	client := s.addClient(t, "client")
	meshlab.WaitMesh(t, time.Minute, r1, r2, client)
	s.allowSite(t, r1, r2, client)
	s.approve(t, r1, siteLAN)
	s.approve(t, r2, siteLAN)
	ctx := t.Context()
	meshlab.Eventually(t, approvalDeadline, "the client to route through "+r1.Hostname(), func() error {
		if err := via(ctx, client, r1); err != nil {
			return err
		}
		st := client.Status(t)
		if len(st.Routes.Installed[0].Standby) != 1 {
			return fmt.Errorf("standby routers %v, want %s", st.Routes.Installed[0].Standby, r2.Hostname())
		}
		return s.reach(ctx, client)
	})

	start := time.Now()
	if err := r1.Agent.Host.CutOff(ctx, true); err != nil {
		t.Fatal(err)
	}
	meshlab.Eventually(t, failoverDeadline, "failover to "+r2.Hostname(), func() error {
		if err := via(ctx, client, r2); err != nil {
			return err
		}
		return s.reach(ctx, client)
	})
	t.Logf("failover: %s from the primary's loss to a routed connection through the standby", time.Since(start).Round(time.Millisecond))

	back := time.Now()
	if err := r1.Agent.Host.CutOff(ctx, false); err != nil {
		t.Fatal(err)
	}
	meshlab.Eventually(t, failoverDeadline+30*time.Second, "the route back on "+r1.Hostname(), func() error {
		return via(ctx, client, r1)
	})
	if d := time.Since(back); d < agent.RouteHoldUp {
		t.Errorf("the route came back after %s, before the hold time (%s): no hysteresis", d, agent.RouteHoldUp)
	}
	// At once: the router's WireGuard endpoint never went through the
	// route it takes back (its LAN address is inside the routed prefix).
	if err := s.reach(ctx, client); err != nil {
		t.Fatalf("after the route came back: %v", err)
	}
	// No flapping: it stays on r1.
	for range 5 {
		time.Sleep(time.Second)
		if err := via(ctx, client, r1); err != nil {
			t.Fatalf("the route moved again: %v", err)
		}
	}
}
