package meshlab_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// failoverBound bounds the move off a relay that stopped: the relay client
// pings its relay every 5 s and gives it up after 3 lost pings (2 s
// timeout each), then allocates on the next relay, signs the new relayed
// address, and the peers punch to it; the rest is slack for a loaded
// machine.
const failoverBound = 60 * time.Second

// TestRelayStopMovesPairs: two laptops behind symmetric NAT routers of
// their own (no direct path between them) and two standalone relays
// (`certmesh-server run --role relay`, listed by the CA; the server's own
// relay off). The pair relays through them; then the relay the first
// laptop allocated on stops (SIGTERM). Each laptop that was on it
// allocates on the other relay, and the pair is relayed again, through the
// remaining relay only, and carries traffic both ways within
// failoverBound.
func TestRelayStopMovesPairs(t *testing.T) {
	t.Parallel()
	netns.RequireCommands(t, "nft")
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	m := e2e.NewTestMesh(t)
	if err := m.InitServer(ctx); err != nil {
		t.Fatal(err)
	}
	var relays []*e2e.StandaloneRelay
	var entries []ca.StandaloneRelay
	for _, name := range []string{"relay-a", "relay-b"} {
		r, err := m.AddStandaloneRelay(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		relays, entries = append(relays, r), append(entries, r.Entry)
	}
	if err := m.PatchServerConfig(map[string]any{"relay": ca.RelayConfig{Disabled: true, Relays: entries}}); err != nil {
		t.Fatal(err)
	}
	if err := m.RunServer(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range relays {
		if err := m.StartRelay(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	lab := &meshlab.NetNSLab{Mesh: m}
	var nodes []meshlab.Node
	for i, name := range []string{"carrier-a", "carrier-b"} {
		router, err := m.Net.AddRouter(ctx, name, netns.RouterOptions{Mapping: netns.Symmetric,
			LAN: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/24", 90+i))})
		if err != nil {
			t.Fatal(err)
		}
		h, err := router.AddHost(ctx, "phone-"+name)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, lab.JoinOn(t, h, meshlab.NodeOptions{}))
	}
	meshlab.ServeEcho(t, nodes[0], 7000)
	meshlab.ServeEcho(t, nodes[1], 7000)
	routes := []route{{nodes[0], nodes[1], 7000}, {nodes[1], nodes[0], 7000}}
	firstContact(t, routes...)
	waitPaths(t, pathDeadline, "relay", nodes...)

	var stopped *e2e.StandaloneRelay
	meshlab.Eventually(t, 30*time.Second, nodes[0].Hostname()+"'s relay allocation", func() error {
		st := nodes[0].Status(t)
		if st.Relay == nil || !st.Relay.Relayed.IsValid() {
			return fmt.Errorf("no relay allocation: %+v", st.Relay)
		}
		for _, r := range relays {
			if st.Relay.Relayed.Addr() == r.Host.Addr {
				stopped = r
				return nil
			}
		}
		return fmt.Errorf("allocated at %v, on neither relay", st.Relay.Relayed)
	})
	if err := stopped.Proc.Stop(); err != nil {
		t.Logf("stopping %s: %v", stopped.Entry.Name, err)
	}
	down := time.Now()
	for _, n := range nodes {
		for _, peer := range nodes {
			if peer == n {
				continue
			}
			meshlab.Eventually(t, failoverBound, n.Hostname()+" relayed to "+peer.Hostname()+" without "+stopped.Entry.Name, func() error {
				st := n.Status(t)
				if st.Relay == nil || !st.Relay.Relayed.IsValid() || st.Relay.Relayed.Addr() == stopped.Host.Addr {
					return fmt.Errorf("own allocation %+v", st.Relay)
				}
				p, err := meshlab.PeerNamed(st, peer.Hostname())
				if err != nil {
					return err
				}
				if p.Path != "relay" || strings.Contains(p.Endpoint, stopped.Host.Addr.String()+":") ||
					strings.HasPrefix(p.Relay, stopped.Host.Addr.String()+":") {
					return fmt.Errorf("path %q at %q (relay %q)", p.Path, p.Endpoint, p.Relay)
				}
				return nil
			})
		}
	}
	t.Logf("both ways off %s %v after it stopped", stopped.Entry.Name, time.Since(down).Round(time.Millisecond))
	firstContact(t, routes...)
}
