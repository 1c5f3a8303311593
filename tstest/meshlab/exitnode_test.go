package meshlab_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// leakCounter counts what host h sends out of its network interface to
// dst (an nftables counter of the test's own).
type leakCounter struct {
	h   *netns.Host
	dst netip.Addr
}

func newLeakCounter(t *testing.T, h *netns.Host, dst netip.Addr) *leakCounter {
	t.Helper()
	if _, err := h.Run(t.Context(), "nft", "add table inet meshlab_leak { chain out { type filter hook output priority 0; policy accept; oifname \""+
		netns.HostIface+"\" ip daddr "+dst.String()+" counter; }; }"); err != nil {
		t.Fatal(err)
	}
	return &leakCounter{h: h, dst: dst}
}

var packetsRE = regexp.MustCompile(`counter packets ([0-9]+)`)

func (l *leakCounter) packets(t *testing.T) int {
	t.Helper()
	out, err := l.h.Run(t.Context(), "nft", "list", "table", "inet", "meshlab_leak")
	if err != nil {
		t.Fatal(err)
	}
	m := packetsRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestExitNode: a client with --exit-node sends everything through the
// exit node, certified for the default routes: a host on the network that
// runs no agent sees the exit node's address, and nothing the client sends
// to it leaves the client's interface. When the exit node goes from the
// network, and then is revoked, the client reaches nothing and still
// sends no packet to the host outside the tunnel (red before with the
// default routes dropped when the exit node is). A client with
// --exit-node-allow-lan reaches the host on its own network directly.
func TestExitNode(t *testing.T) {
	t.Parallel()
	netns.RequireCommands(t, "nft", "ping")
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	net0 := lab.Mesh.Net
	inet, err := net0.AddHost(ctx, "internet")
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.AddrPortFrom(inet.Addr, 7000)
	seen := make(chan netip.Addr, 64)
	ln, err := inet.Listen("tcp", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	var echo e2e.EchoServer
	echo.Serve(&notifyListener{Listener: ln, seen: seen})
	t.Cleanup(echo.Close)

	eh, err := net0.AddHost(ctx, "exit")
	if err != nil {
		t.Fatal(err)
	}
	exit := lab.JoinOn(t, eh, meshlab.NodeOptions{}, "--advertise-routes", "0.0.0.0/0,::/0").(*meshlab.NetNSNode)
	ch, err := net0.AddHost(ctx, "client")
	if err != nil {
		t.Fatal(err)
	}
	// The client's resolver forwards names outside the trust domain to a
	// resolver on the internet host.
	dnsSeen := make(chan netip.Addr, 64)
	up := startUpstreamAt(t, inet, netip.AddrPortFrom(inet.Addr, 53).String(), dnsSeen)
	client := lab.JoinOn(t, ch, meshlab.NodeOptions{}, "--exit-node", "exit", "--dns-upstream", up).(*meshlab.NetNSNode)
	lh, err := net0.AddHost(ctx, "lanclient")
	if err != nil {
		t.Fatal(err)
	}
	lanClient := lab.JoinOn(t, lh, meshlab.NodeOptions{}, "--exit-node", "exit", "--exit-node-allow-lan").(*meshlab.NetNSNode)
	meshlab.WaitMesh(t, time.Minute, exit, client, lanClient)
	waitPolicy(t, lab.PublishPolicy(t, []byte(`{"rules": [{"from": ["*"], "to": ["*", "0.0.0.0/0"], "ports": ["*"]}]}`)), exit, client, lanClient)
	m := lab.Mesh
	if _, err := m.ServerCLI(ctx, "devices", "routes", "approve", "--state", m.Server.StateDir, string(exit.DeviceID()), "0.0.0.0/0", "::/0"); err != nil {
		t.Fatal(err)
	}

	leak := newLeakCounter(t, ch, inet.Addr)
	reach := func(n meshlab.Node) error { return meshlab.Reach(ctx, n, dst, 2*time.Second) }
	meshlab.Eventually(t, approvalDeadline, "the client to reach the host through the exit node", func() error {
		st := client.Status(t)
		if !slices.ContainsFunc(st.Routes.Installed, func(r agent.RouteStatus) bool { return r.Prefix.Bits() == 0 && r.Via == exit.DeviceID() }) {
			return fmt.Errorf("client routes %+v", st.Routes.Installed)
		}
		return reach(client)
	})
	if src := drain(seen); len(src) == 0 || slices.ContainsFunc(src, func(a netip.Addr) bool { return a != eh.Addr }) {
		t.Fatalf("the host saw the client from %v, want only the exit node's address %s", src, eh.Addr)
	}
	// DNS too: a name outside the trust domain, asked of the client's
	// resolver, is forwarded through the exit node (the leak check below
	// counts these queries as well).
	for _, network := range []string{"udp", "tcp"} {
		wantRecords(t, client, network, "www.example.org", dns.TypeA, "A 192.0.2.80")
	}
	if src := drain(dnsSeen); len(src) == 0 || slices.ContainsFunc(src, func(a netip.Addr) bool { return a != eh.Addr }) {
		t.Fatalf("the upstream resolver saw the client's queries from %v, want only the exit node's address %s", src, eh.Addr)
	}
	if n := leak.packets(t); n != 0 {
		t.Fatalf("%d packets to the host left the client's interface outside the tunnel", n)
	}
	// Positive control of the counter: a packet with the agent's mark
	// bypasses the tunnel and is counted.
	if _, err := ch.Run(ctx, "ping", "-n", "-c", "1", "-W", "1", "-m", strconv.Itoa(wgdev.WireGuardMark), inet.Addr.String()); err != nil {
		t.Fatal(err)
	}
	base := leak.packets(t)
	if base == 0 {
		t.Fatal("the leak counter counted no marked ping: it would not see a leak")
	}

	// The LAN client reaches the host directly, from its own address.
	if err := reach(lanClient); err != nil {
		t.Fatalf("the client with --exit-node-allow-lan: %v", err)
	}
	if src := drain(seen); !slices.Equal(src, []netip.Addr{lh.Addr}) {
		t.Fatalf("the host saw the LAN client from %v, want its own address %s", src, lh.Addr)
	}

	// The exit node vanishes from the network, then is revoked: nothing
	// gets through, nothing leaves outside the tunnel.
	if err := eh.CutOff(ctx, true); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := reach(client); err == nil {
			t.Fatal("the client reached the host with the exit node gone")
		}
	}
	if resp, err := lookup(ctx, client, "udp", "www.example.org", dns.TypeA); err == nil && resp.Rcode == dns.RcodeSuccess {
		t.Fatalf("the client resolved a name outside the mesh with the exit node gone: %v", resp.Answer)
	}
	if src := drain(dnsSeen); len(src) != 0 {
		t.Fatalf("the upstream resolver got queries from %v with the exit node gone", src)
	}
	lab.RevokeDevice(t, exit)
	meshlab.Eventually(t, 15*time.Second, "the revoked exit node to go", func() error {
		if _, err := meshlab.PeerNamed(client.Status(t), "exit"); err == nil {
			return fmt.Errorf("the client still has the exit node as a peer")
		}
		return nil
	})
	for range 3 {
		if err := reach(client); err == nil {
			t.Fatal("the client reached the host with the exit node revoked")
		}
	}
	if n := leak.packets(t); n != base {
		t.Fatalf("%d packets to the host left the client's interface outside the tunnel while the exit node was gone", n-base)
	}
}

// notifyListener sends the source of each accepted connection on seen.
type notifyListener struct {
	net.Listener
	seen chan netip.Addr
}

func (l *notifyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		if ap, perr := netip.ParseAddrPort(c.RemoteAddr().String()); perr == nil {
			select {
			case l.seen <- ap.Addr():
			default:
			}
		}
	}
	return c, err
}

// drain returns what seen holds now.
func drain(seen chan netip.Addr) []netip.Addr {
	var out []netip.Addr
	for {
		select {
		case a := <-seen:
			out = append(out, a)
		default:
			return out
		}
	}
}
