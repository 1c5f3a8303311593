package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/netns"
)

// Path is one way from a client namespace to a server namespace that the
// benchmark measures.
type Path struct {
	Key    string // "veth", "wireguard-go", "certmesh", "certmesh-1000"
	Title  string // for the report
	Client *netns.Host
	Server *netns.Host
	Dst    netip.Addr // address the client sends to
	Iface  string     // the client's tunnel interface; "" for the plain veth
	MTU    int        // MTU of the client's egress interface for Dst
	// Procs are the tunnel's processes at both ends (the agents, or the
	// wireguard-go daemons); none for the plain veth.
	Procs []*netns.Process
	// Policy, for the certmesh paths, is the access policy published (as
	// a new version, installed on both agents) before every measurement
	// over the path; Rules is its number of rules.
	Policy []byte
	Rules  int
}

// BareMTU is the MTU given to the hand-configured wireguard-go interfaces:
// wireguard-go's and wg-quick's default (1500 minus 80 bytes of
// WireGuard-over-IPv6 overhead).
const BareMTU = 1420

// Topology is everything the network benchmark runs on: one netns
// network (a bridge) with
//
//	srv      certmesh-server
//	a1, a2   certmesh agents on kernel TUN (wireguard-go inside the agent)
//	w1, w2   the upstream wireguard-go binary, configured by hand with wg(8)
//	         with a1's and a2's own keys and overlay addresses
//
// Every namespace reaches the others through its veth into the same
// bridge, so the three paths differ only in what sits on top of the veth.
type Topology struct {
	Net    *netns.Network
	Mesh   *e2e.Mesh
	Paths  []*Path
	WGProc []*netns.Process
	// Agents are the two certmesh agents (client a1, server a2).
	Agents []*e2e.Agent
}

// SetUp builds the topology on n. On error the caller still closes n,
// which stops everything started so far.
func SetUp(ctx context.Context, log *slog.Logger, n *netns.Network, bin *e2e.Binaries, dir string) (*Topology, error) {
	t := &Topology{Net: n}
	start := time.Now()
	m, err := e2e.Start(ctx, n, e2e.Options{Bin: bin, Dir: filepath.Join(dir, "mesh"), Logger: log}, 2)
	t.Mesh = m
	if err != nil {
		return t, fmt.Errorf("starting the certmesh mesh: %w%s", err, meshLogs(m))
	}
	ags := m.Agents()
	a1, a2 := ags[0], ags[1]
	t.Agents = []*e2e.Agent{a1, a2}
	log.Info("netbench: certmesh mesh up", "took", time.Since(start).Round(time.Millisecond),
		"a1", a1.V4(), "a2", a2.V4())

	// The 1,000-rule policy: only its last rule accepts a1 -> a2.
	cli, err := identityOf(ctx, a1)
	if err != nil {
		return t, err
	}
	srv, err := identityOf(ctx, a2)
	if err != nil {
		return t, err
	}
	large := LargePolicy(cli, srv, LargePolicyRules)
	if err := CheckLargePolicy(large, cli, srv, LargePolicyRules); err != nil {
		return t, err
	}
	starter := allowAll()
	if err := checkAllowAll(starter); err != nil {
		return t, err
	}

	// Bare wireguard-go with the agents' own keys and addresses.
	w1, err := n.AddHost(ctx, "w1")
	if err != nil {
		return t, err
	}
	w2, err := n.AddHost(ctx, "w2")
	if err != nil {
		return t, err
	}
	bare := []struct {
		h          *netns.Host
		self, peer *e2e.Agent
		peerHost   *netns.Host
	}{{w1, a1, a2, w2}, {w2, a2, a1, w1}}
	var wgIfaces []string
	for i, b := range bare {
		iface := n.Prefix() + "g" + strconv.Itoa(i+1)
		p, err := startBareWG(ctx, b.h, bin.WireGuardGo, iface, filepath.Join(dir, "wireguard-go-"+b.h.Name+".log"),
			filepath.Join(b.self.StateDir, "wireguard.key"), b.self, b.peer,
			netip.AddrPortFrom(b.peerHost.Addr, e2e.WireGuardPort))
		if err != nil {
			return t, err
		}
		t.WGProc = append(t.WGProc, p)
		wgIfaces = append(wgIfaces, iface)
	}
	log.Info("netbench: bare wireguard-go up", "w1", w1.Addr, "w2", w2.Addr)

	t.Paths = []*Path{
		{Key: "veth", Title: "veth (no tunnel)", Client: a1.Host, Server: a2.Host, Dst: a2.Host.Addr},
		{Key: "wireguard-go", Title: "bare wireguard-go", Client: w1, Server: w2, Dst: a2.V4(), Iface: wgIfaces[0],
			Procs: t.WGProc},
		{Key: "certmesh", Title: "certmesh agent, 1-rule policy (allow all)", Client: a1.Host, Server: a2.Host, Dst: a2.V4(), Iface: a1.Iface,
			Procs: []*netns.Process{a1.Proc, a2.Proc}, Policy: starter, Rules: 1},
		{Key: "certmesh-1000", Title: "certmesh agent, 1,000-rule policy (the last one accepts)", Client: a1.Host, Server: a2.Host, Dst: a2.V4(), Iface: a1.Iface,
			Procs: []*netns.Process{a1.Proc, a2.Proc}, Policy: large, Rules: LargePolicyRules},
	}
	for _, p := range t.WGProc {
		if err := checkComm(p, filepath.Base(bin.WireGuardGo)); err != nil {
			return t, err
		}
	}
	for _, a := range ags {
		if err := checkComm(a.Proc, filepath.Base(bin.Certmesh)); err != nil {
			return t, err
		}
	}
	for _, p := range t.Paths {
		if p.MTU, err = routeMTU(ctx, p.Client, p.Dst); err != nil {
			return t, err
		}
	}
	return t, nil
}

// startBareWG runs `wireguard-go -f iface` on h and configures it the way
// an administrator would by hand: wg set (key, port, one peer with its
// overlay addresses as AllowedIPs and a static endpoint), then ip for the
// address, MTU and route.
func startBareWG(ctx context.Context, h *netns.Host, wgBin, iface, logPath, keyFile string, self, peer *e2e.Agent, endpoint netip.AddrPort) (*netns.Process, error) {
	if wgBin == "" {
		return nil, errors.New("wireguard-go was not built")
	}
	p, err := startReady(ctx, h, logPath, 15*time.Second,
		func(err error) error { return fmt.Errorf("wireguard-go exited: %v: %s", err, e2e.Tail(logPath, 10)) },
		func(wctx context.Context) error {
			_, err := h.Run(wctx, "wg", "show", iface)
			return err
		}, wgBin, "-f", iface)
	if p == nil {
		return nil, err
	}
	if err != nil {
		return p, fmt.Errorf("waiting for wireguard-go on %s: %w", h.Name, err)
	}
	var allowed []string
	for _, a := range peer.Addrs {
		allowed = append(allowed, netip.PrefixFrom(a, a.BitLen()).String())
	}
	steps := [][]string{
		{"wg", "set", iface, "listen-port", strconv.Itoa(e2e.WireGuardPort), "private-key", keyFile,
			"peer", peer.Key.String(), "allowed-ips", strings.Join(allowed, ","), "endpoint", endpoint.String()},
		{"ip", "addr", "add", netip.PrefixFrom(self.V4(), 32).String(), "dev", iface},
		{"ip", "link", "set", iface, "mtu", strconv.Itoa(BareMTU), "up"},
		{"ip", "route", "add", netip.PrefixFrom(peer.V4(), 32).String(), "dev", iface},
	}
	for _, s := range steps {
		if _, err := h.Run(ctx, s[0], s[1:]...); err != nil {
			return p, fmt.Errorf("configuring wireguard-go on %s: %w", h.Name, err)
		}
	}
	return p, nil
}

var mtuRE = regexp.MustCompile(`\bmtu (\d+)`)

// routeMTU returns the MTU of the interface h uses to reach dst.
func routeMTU(ctx context.Context, h *netns.Host, dst netip.Addr) (int, error) {
	out, err := h.Run(ctx, "ip", "-o", "route", "get", dst.String())
	if err != nil {
		return 0, err
	}
	f := strings.Fields(out)
	dev := ""
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "dev" {
			dev = f[i+1]
			break
		}
	}
	if dev == "" {
		return 0, fmt.Errorf("no device in `ip route get %s` on %s: %q", dst, h.Name, out)
	}
	out, err = h.Run(ctx, "ip", "-o", "link", "show", "dev", dev)
	if err != nil {
		return 0, err
	}
	m := mtuRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no mtu in `ip link show %s` on %s: %q", dev, h.Name, out)
	}
	return strconv.Atoi(m[1])
}

// WarmUp waits until 3 pings in a row come back over every path, which
// also completes the WireGuard handshakes before anything is measured.
func (t *Topology) WarmUp(ctx context.Context) error {
	for _, p := range t.Paths {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := netns.WaitFor(wctx, 200*time.Millisecond, func() error {
			r, err := e2e.Ping(wctx, p.Client, p.Dst, 3, 100*time.Millisecond)
			if err != nil {
				return err
			}
			if r.Received != 3 {
				return fmt.Errorf("%d of 3 replies", r.Received)
			}
			return nil
		})
		cancel()
		if err != nil {
			return fmt.Errorf("path %s (%s -> %s) does not work: %w", p.Key, p.Client.Name, p.Dst, err)
		}
	}
	return nil
}

// meshLogs returns the tails of the mesh's logs, for an error message.
func meshLogs(m *e2e.Mesh) string {
	if m == nil {
		return ""
	}
	var b strings.Builder
	for name, path := range m.Logs() {
		fmt.Fprintf(&b, "\n---- %s (%s):\n%s", name, path, e2e.Tail(path, 20))
	}
	return b.String()
}
