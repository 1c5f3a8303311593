package meshlab_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/relaycred"
	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/evilrelay"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// sinkPort is where each agent's test application (a UDP sink on its
// overlay address) listens.
const sinkPort = 9000

// TestHostileRelay: the only relay the CA lists is hostile
// (tstest/evilrelay): it holds the relay key, so real agents behind
// symmetric NATs (which need a relay) allocate on it and it relays their
// traffic, but it also records every datagram, tells each agent's STUN
// that it is at a victim host's address (so each signs that address as
// its reflexive candidate, and its peer probes it), answers every ping
// through it to an address other than its allocations with a forged pong
// at once, and then sends each agent, through its own allocation, every
// datagram it relayed to it again, modified copies, forged WireGuard data
// messages whose body is a bare IP packet to the agent's application,
// those bare packets and forged handshake messages. Through all of it:
//   - the traffic between the two applications flows (it does relay);
//   - it never saw the test's payload (WireGuard ciphertext only);
//   - no injected, replayed or modified datagram reached either
//     application: each sink got exactly the datagrams its peer sent,
//     each once;
//   - the peers and allowed IPs in each WireGuard device are unchanged;
//   - no agent's path to its peer ever left the relay's allocations for
//     an address the relay chose (its forged pongs count for nothing:
//     red with agent/path's probe MAC check removed), and the victim got
//     no WireGuard message, only the peers' probes to the address the
//     lie made them sign (that much a lying STUN server can do).
func TestHostileRelay(t *testing.T) {
	t.Parallel()
	netns.RequireCommands(t, "nft", "wg")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	m := e2e.NewTestMesh(t)
	if err := m.InitServer(ctx); err != nil {
		t.Fatal(err)
	}
	evilHost, err := m.Net.AddHost(ctx, "evil")
	if err != nil {
		t.Fatal(err)
	}
	victimHost, err := m.Net.AddHost(ctx, "victim")
	if err != nil {
		t.Fatal(err)
	}
	turnAddr := netip.AddrPortFrom(evilHost.Addr, ca.DefaultRelayUDPPort)
	if err := m.PatchServerConfig(map[string]any{"relay": ca.RelayConfig{Disabled: true,
		Relays: []ca.StandaloneRelay{{Name: "evil", UDP: turnAddr.String()}}}}); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(m.Dir, "evil.key")
	if _, err := m.ServerCLI(ctx, "relay-key", "--state", m.Server.StateDir, "--name", "evil", "--out", keyFile); err != nil {
		t.Fatal(err)
	}
	key, err := relaycred.ReadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RunServer(ctx); err != nil {
		t.Fatal(err)
	}
	victim := startVictim(t, victimHost)
	marker := make([]byte, 16)
	rand.Read(marker)
	marker = []byte(hex.EncodeToString(marker))
	evil := startEvilRelay(t, evilHost, turnAddr, evilrelay.Config{Key: key, Realm: e2e.DefaultTrustDomain,
		MappedLie: victim.addr, Marker: marker})

	lab := &meshlab.NetNSLab{Mesh: m}
	var nodes []*meshlab.NetNSNode
	for i, name := range []string{"cgnat1", "cgnat2"} {
		router, err := m.Net.AddRouter(ctx, name, netns.RouterOptions{Mapping: netns.Symmetric,
			LAN: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/24", 70+i))})
		if err != nil {
			t.Fatal(err)
		}
		h, err := router.AddHost(ctx, "laptop-"+name)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, lab.JoinOn(t, h, meshlab.NodeOptions{}).(*meshlab.NetNSNode))
	}
	sinks := []*sink{startSink(t, nodes[0]), startSink(t, nodes[1])}
	// Checked however the test ends (a steered path may keep the tunnel
	// from ever coming up).
	watch := watchEndpoints(t, nodes, evilHost.Addr)

	meshlab.ServeEcho(t, nodes[0], 7000)
	meshlab.ServeEcho(t, nodes[1], 7000)
	firstContact(t, route{nodes[0], nodes[1], 7000}, route{nodes[1], nodes[0], 7000})
	for i, n := range nodes {
		meshlab.Eventually(t, 30*time.Second, n.Hostname()+" relayed to its peer", func() error {
			p, err := meshlab.PeerNamed(n.Status(t), nodes[1-i].Hostname())
			if err != nil {
				return err
			}
			if p.Path != "relay" {
				return fmt.Errorf("path %q at %q", p.Path, p.Endpoint)
			}
			return nil
		})
	}
	for i := range nodes {
		sendLegit(t, nodes[i], nodes[1-i], sinks[1-i], marker, 10)
	}
	before := wireGuardConfig(t, nodes)

	plain := [][]byte{
		evilrelay.UDPPacket(netip.AddrPortFrom(nodes[0].V4(), 5555), netip.AddrPortFrom(nodes[1].V4(), sinkPort), []byte("INJECTED")),
		evilrelay.UDPPacket(netip.AddrPortFrom(nodes[1].V4(), 5555), netip.AddrPortFrom(nodes[0].V4(), sinkPort), []byte("INJECTED")),
	}
	for range 2 {
		if n := evil.Inject(plain); n == 0 {
			t.Fatal("the hostile relay injected nothing")
		}
	}
	// Datagrams after the injection cross the same sockets: once they
	// arrived, what was injected before them was processed.
	for i := range nodes {
		sendLegit(t, nodes[i], nodes[1-i], sinks[1-i], marker, 2)
	}
	watch.stop()

	st := evil.Stats()
	t.Logf("hostile relay: %+v; victim got %d probes", st, victim.probes())
	if st.WireGuard < 24 || st.Lies == 0 || st.ForgedPongs == 0 || st.Injected == 0 {
		t.Fatalf("the hostile relay did not do its part: %+v", st)
	}
	if st.MarkerSeen != 0 {
		t.Errorf("the relay saw the applications' payload in %d datagrams", st.MarkerSeen)
	}
	for _, s := range sinks {
		s.check(t)
	}
	if after := wireGuardConfig(t, nodes); !slices.Equal(before, after) {
		t.Errorf("WireGuard configuration changed under the hostile relay:\nbefore %q\nafter  %q", before, after)
	}
	if n := victim.wireGuard(); n != 0 {
		t.Errorf("the victim at the relay's lie %s got %d WireGuard messages", victim.addr, n)
	}
}

// startEvilRelay runs the hostile relay on h at addr, relayed sockets on h.
func startEvilRelay(t *testing.T, h *netns.Host, addr netip.AddrPort, cfg evilrelay.Config) *evilrelay.Relay {
	t.Helper()
	pc, err := h.ListenPacket("udp4", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Conn, cfg.RelayIP = pc, addr.Addr()
	cfg.ListenRelayed = func() (net.PacketConn, error) {
		return h.ListenPacket("udp4", netip.AddrPortFrom(addr.Addr(), 0).String())
	}
	r, err := evilrelay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// sink is a test application: a UDP socket on an agent's overlay address
// that keeps every datagram it gets.
type sink struct {
	name string
	mu   sync.Mutex
	got  []string
	sent map[string]bool // what its peer sent it
}

func startSink(t *testing.T, n *meshlab.NetNSNode) *sink {
	t.Helper()
	pc, err := n.ListenUDP(sinkPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	s := &sink{name: n.Hostname(), sent: map[string]bool{}}
	go readEach(pc, func(b []byte) {
		s.mu.Lock()
		s.got = append(s.got, string(b))
		s.mu.Unlock()
	})
	return s
}

func (s *sink) has(msg string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.got, msg)
}

// check fails t unless s got only what its peer sent, each once.
func (s *sink) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, g := range s.got {
		switch {
		case !s.sent[g]:
			t.Errorf("%s's application got a datagram its peer never sent: %q", s.name, g)
		case seen[g]:
			t.Errorf("%s's application got %q twice (a replay)", s.name, g)
		}
		seen[g] = true
	}
}

// sendLegit sends n datagrams from a to b's sink through the tunnel, each
// unique and carrying marker, each until b's sink has it.
func sendLegit(t *testing.T, a, b *meshlab.NetNSNode, s *sink, marker []byte, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := a.DialUDP(ctx, netip.AddrPortFrom(b.V4(), sinkPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range n {
		err := netns.WaitFor(ctx, 500*time.Millisecond, func() error {
			msg := fmt.Sprintf("%s -> %s #%d %x %s", a.Hostname(), b.Hostname(), i, time.Now().UnixNano(), marker)
			s.mu.Lock()
			s.sent[msg] = true
			s.mu.Unlock()
			if _, err := c.Write([]byte(msg)); err != nil {
				return err
			}
			deadline := time.Now().Add(400 * time.Millisecond)
			for time.Now().Before(deadline) {
				if s.has(msg) {
					return nil
				}
				time.Sleep(10 * time.Millisecond)
			}
			return fmt.Errorf("%q not delivered", msg)
		})
		if err != nil {
			t.Fatalf("%s to %s's application: %v", a.Hostname(), b.Hostname(), err)
		}
	}
}

// wireGuardConfig is each device's peers and their allowed IPs, as `wg
// show` prints them.
func wireGuardConfig(t *testing.T, nodes []*meshlab.NetNSNode) []string {
	t.Helper()
	var out []string
	for _, n := range nodes {
		ips, err := n.Agent.WGAllowedIPs(t.Context())
		if err != nil {
			t.Fatalf("wg show on %s: %v", n.Hostname(), err)
		}
		for k, v := range ips {
			out = append(out, n.Hostname()+" "+k+" "+strings.Join(v, ","))
		}
	}
	slices.Sort(out)
	return out
}

// endpointWatch polls every agent's status for the endpoint of each peer
// while the attack runs, and keeps any chosen path (direct or relay: before
// one is chosen WireGuard's endpoint is the peer's first signed candidate)
// that is not on the relay's host. It checks when the test ends.
type endpointWatch struct {
	done    chan struct{}
	stopped sync.WaitGroup
	mu      sync.Mutex
	bad     []string
	polls   int
}

func watchEndpoints(t *testing.T, nodes []*meshlab.NetNSNode, relayIP netip.Addr) *endpointWatch {
	w := &endpointWatch{done: make(chan struct{})}
	w.stopped.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, n := range nodes {
				st, err := n.Agent.Status(t.Context())
				if err != nil {
					continue
				}
				w.mu.Lock()
				w.polls++
				for _, p := range st.Peers {
					if p.Endpoint == "" || p.Path != "direct" && p.Path != "relay" {
						continue
					}
					tail := p.Endpoint
					if rest, ok := strings.CutPrefix(tail, "relay:"); ok {
						_, tail, _ = strings.Cut(rest, ":")
					}
					if ap, err := netip.ParseAddrPort(tail); err != nil || ap.Addr() != relayIP {
						w.bad = append(w.bad, fmt.Sprintf("%s -> %s at %s (path %s)", n.Hostname(), p.Hostname, p.Endpoint, p.Path))
					}
				}
				w.mu.Unlock()
			}
			select {
			case <-w.done:
				return
			case <-tick.C:
			}
		}
	})
	t.Cleanup(func() {
		w.stop()
		w.check(t)
	})
	return w
}

func (w *endpointWatch) stop() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.stopped.Wait()
}

func (w *endpointWatch) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.polls == 0 {
		t.Error("no status was read while the relay attacked")
	}
	if len(w.bad) > 0 {
		t.Errorf("a path left the relay's allocations for an address the relay chose (%d of %d polls), first: %s", len(w.bad), w.polls, w.bad[0])
	}
}

// victim is a host on the public segment whose address the relay gives
// out as its clients' public address; it counts what arrives.
type victim struct {
	addr         netip.AddrPort
	mu           sync.Mutex
	nProbes, nWG int
}

func startVictim(t *testing.T, h *netns.Host) *victim {
	t.Helper()
	v := &victim{addr: netip.AddrPortFrom(h.Addr, 4444)}
	pc, err := h.ListenPacket("udp4", v.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go readEach(pc, func(b []byte) {
		v.mu.Lock()
		defer v.mu.Unlock()
		switch {
		case len(b) >= 4 && b[0] >= 1 && b[0] <= 4 && b[1] == 0 && b[2] == 0 && b[3] == 0:
			v.nWG++
		case len(b) >= 1 && b[0] == 0xCE:
			v.nProbes++
		}
	})
	return v
}

// readEach hands fn every datagram pc reads until it is closed.
func readEach(pc net.PacketConn, fn func([]byte)) {
	buf := make([]byte, 2048)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		fn(buf[:n])
	}
}

func (v *victim) probes() int    { v.mu.Lock(); defer v.mu.Unlock(); return v.nProbes }
func (v *victim) wireGuard() int { v.mu.Lock(); defer v.mu.Unlock(); return v.nWG }
