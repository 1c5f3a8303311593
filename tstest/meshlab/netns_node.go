package meshlab

// A NetNS node: an agent process, reached through its local API (a unix
// socket, from any namespace) and through sockets opened inside its
// namespace, which go through its TUN interface like any program's there.

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/e2e"
)

// Hostname is the name the agent enrolled with (its host's).
func (n *NetNSNode) Hostname() string { return n.Agent.Name }

// DeviceID is the agent's certified device ID.
func (n *NetNSNode) DeviceID() certs.DeviceID { return n.Agent.ID }

// WireGuardKey is the agent's certified WireGuard key.
func (n *NetNSNode) WireGuardKey() certs.WireGuardKey { return n.Agent.Key }

// Addrs are the agent's certified overlay addresses, IPv4 first.
func (n *NetNSNode) Addrs() []netip.Addr { return slices.Clone(n.Agent.Addrs) }

// V4 is the agent's certified IPv4 overlay address.
func (n *NetNSNode) V4() netip.Addr { return n.Agent.V4() }

// LocalAPI is a client of the agent's local API: a unix socket in its state
// directory, reachable from every namespace.
func (n *NetNSNode) LocalAPI() *agent.Client { return agent.NewClient(n.Agent.StateDir) }

// Status reads the agent's status through its local API.
func (n *NetNSNode) Status(t testing.TB) *agent.Status {
	t.Helper()
	st, err := n.Agent.Status(t.Context())
	if err != nil {
		t.Fatalf("status of %s: %v", n.Agent.Name, err)
	}
	return st
}

// Listen listens on the overlay address inside the agent's namespace: the
// connections come through its TUN interface.
func (n *NetNSNode) Listen(port uint16) (net.Listener, error) {
	return n.Agent.Host.Listen("tcp", netip.AddrPortFrom(n.V4(), port).String())
}

// Dial connects from inside the agent's namespace.
func (n *NetNSNode) Dial(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	return e2e.HostDialer(n.Agent.Host)(ctx, dst)
}

// ListenUDP opens a UDP socket on the overlay address inside the agent's
// namespace.
func (n *NetNSNode) ListenUDP(port uint16) (net.PacketConn, error) {
	return n.Agent.Host.ListenPacket("udp", netip.AddrPortFrom(n.V4(), port).String())
}

// DialUDP opens a UDP socket inside the agent's namespace, connected to
// dst.
func (n *NetNSNode) DialUDP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	return n.Agent.Host.DialContext(ctx, "udp", dst.String())
}

// WireGuardPeers runs `wg show IFACE peers` in the agent's namespace.
func (n *NetNSNode) WireGuardPeers(t testing.TB) []certs.WireGuardKey {
	t.Helper()
	out, err := n.Agent.WGPeers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var keys []certs.WireGuardKey
	for _, s := range out {
		k, err := certs.ParseWireGuardKey(s)
		if err != nil {
			t.Fatalf("wg show on %s: %v", n.Agent.Name, err)
		}
		keys = append(keys, k)
	}
	return keys
}

// Stop sends SIGTERM to the agent and waits for it.
func (n *NetNSNode) Stop() {
	if err := n.Agent.Stop(); err != nil {
		slog.Warn("meshlab: stopping an agent", "agent", n.Agent.Name, "err", err)
	}
}
