package meshlab

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

// The in-process backend as a [Lab]: the CA is called directly, where the
// NetNS backend runs the server's admin commands.

var (
	_ Lab  = (*InProc)(nil)
	_ Node = (*InProcNode)(nil)
)

// Backend is [InProcess].
func (m *InProc) Backend() Backend { return InProcess }

// Join is [InProc.AddNode] as a [Node].
func (m *InProc) Join(t testing.TB, name string, o NodeOptions) Node {
	t.Helper()
	return m.AddNode(t, name, o)
}

// TryJoin is [InProc.StartNode] as a [Node].
func (m *InProc) TryJoin(t testing.TB, name string, o NodeOptions) (Node, error) {
	n, err := m.StartNode(t, name, o)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// RevokeDevice revokes n's device through the CA.
func (m *InProc) RevokeDevice(t testing.TB, n Node) {
	t.Helper()
	if _, err := m.Server.CA.Revoke(t.Context(), n.DeviceID()); err != nil {
		t.Fatalf("meshlab: revoking %s: %v", n.Hostname(), err)
	}
}

// RevokeUser revokes a user through the CA.
func (m *InProc) RevokeUser(t testing.TB, email string) {
	t.Helper()
	if _, err := m.Server.CA.RevokeUser(t.Context(), email); err != nil {
		t.Fatalf("meshlab: revoking user %s: %v", email, err)
	}
}

// RestartServer closes the server (what SIGTERM does in the binary) and
// starts it again.
func (m *InProc) RestartServer(t testing.TB, pause time.Duration) {
	t.Helper()
	m.StopServer(t)
	time.Sleep(pause) // the outage itself
	m.StartServer(t)
}

// PublishPolicy publishes src through the CA.
func (m *InProc) PublishPolicy(t testing.TB, src []byte) uint64 {
	t.Helper()
	info, err := m.Server.CA.PublishPolicy(t.Context(), src)
	if err != nil {
		t.Fatalf("meshlab: publishing a policy: %v", err)
	}
	return info.Version
}

// Devices lists the CA's devices.
func (m *InProc) Devices(t testing.TB) []Device {
	t.Helper()
	devs, err := m.Server.CA.Devices(t.Context())
	if err != nil {
		t.Fatalf("meshlab: listing devices: %v", err)
	}
	var out []Device
	for _, d := range devs {
		out = append(out, Device{ID: d.ID, Hostname: string(d.Hostname), Addresses: d.Addresses,
			WireGuardKey: d.WireGuardKey, State: string(d.State)})
	}
	return out
}

// IdP is the lab's OpenID Provider.
func (m *InProc) IdP() *oidctest.Provider { return m.idp }

// Hostname is the name the agent enrolled with.
func (n *InProcNode) Hostname() string { return n.Name }

// DeviceID is the node's certified device ID.
func (n *InProcNode) DeviceID() certs.DeviceID { return n.self().DeviceID }

// WireGuardKey is the node's certified WireGuard key.
func (n *InProcNode) WireGuardKey() certs.WireGuardKey { return n.self().WireGuardKey }

// Addrs are the node's certified overlay addresses.
func (n *InProcNode) Addrs() []netip.Addr { return slices.Clone(n.self().Addresses) }

// LocalAPI is a client of the agent's local API.
func (n *InProcNode) LocalAPI() *agent.Client { return n.Client }

// WireGuardPeers lists the keys in the node's wireguard-go device.
func (n *InProcNode) WireGuardPeers(t testing.TB) []certs.WireGuardKey {
	t.Helper()
	stats, err := n.Agent.Device().Peers()
	if err != nil {
		t.Fatalf("meshlab: peers of %s's device: %v", n.Name, err)
	}
	var keys []certs.WireGuardKey
	for _, s := range stats {
		keys = append(keys, s.PublicKey)
	}
	return keys
}

func (n *InProcNode) self() agent.SelfStatus {
	st, err := n.Agent.Status()
	if err != nil {
		panic(err)
	}
	return st.Self
}

// ListenUDP opens a UDP socket on n's netstack.
func (n *InProcNode) ListenUDP(port uint16) (net.PacketConn, error) {
	return n.Agent.Device().Net().ListenUDPAddrPort(netip.AddrPortFrom(n.V4(), port))
}

// DialUDP opens a UDP socket on n's netstack, connected to dst.
func (n *InProcNode) DialUDP(_ context.Context, dst netip.AddrPort) (net.Conn, error) {
	return n.Agent.Device().Net().DialUDPAddrPort(netip.AddrPort{}, dst)
}
