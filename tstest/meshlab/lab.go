// Package meshlab is certmesh's mesh lab: one scenario API ([Lab], [Node])
// and two backends that run it.
//
//   - [InProcess]: a real server (CA, coordinator, admin socket) on a
//     loopback TLS listener and real agents in userspace mode (wireguard-go
//     on gVisor's netstack), all in the test process. No root; the server
//     and the agents can share an injected clock ([InProc], [NodeOptions]).
//   - [NetNS]: the certmesh-server and certmesh binaries as processes, each
//     agent on kernel TUN in its own network namespace (tstest/netns, which
//     also builds NAT routers, several LANs, readdressing and netem for the
//     scenarios that need them: [NetNSLab.Mesh]). Needs root, TUN and wg;
//     under CI=1 a missing prerequisite fails the test.
//
// A scenario is written once, against [Lab], and runs on both:
//
//	func TestSomething(t *testing.T) {
//		meshlab.ForEachBackend(t, meshlab.Options{}, func(t *testing.T, lab meshlab.Lab) {
//			a := lab.Join(t, "a", meshlab.NodeOptions{})
//			...
//		})
//	}
//
// Tests that need one backend's own handles (the in-process CA, a
// clock, a TPM; a NAT router, a signal to a process) use [NewInProc] or
// [NewNetNS] directly. A package whose tests use the NetNS backend calls
// [Main] from its TestMain.
package meshlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/netns"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

// Backend names a way to run a lab.
type Backend string

const (
	// InProcess runs the server and userspace agents in the test process.
	InProcess Backend = "inproc"
	// NetNS runs the binaries, agents on kernel TUN in network namespaces.
	NetNS Backend = "netns"
)

// Backends are the backends [ForEachBackend] runs a scenario on.
var Backends = []Backend{InProcess, NetNS}

// Options configure a lab on any backend.
type Options struct {
	// Users, if any, are the accounts of an OpenID Provider (tstest/oidctest)
	// that the lab starts and of which the CA is a relying party: agents log
	// them in with [Lab.Login].
	Users []oidctest.User
}

// Device is what the CA holds about a device.
type Device = e2e.Device

// Lab is a running certmesh: a server (CA and coordinator) and its agents.
type Lab interface {
	// Backend says how the lab runs.
	Backend() Backend
	// Join enrolls an agent called name and runs it until the test ends,
	// failing the test if it cannot.
	Join(t testing.TB, name string, o NodeOptions) Node
	// TryJoin is Join returning the agent's error (say, a spent token).
	TryJoin(t testing.TB, name string, o NodeOptions) (Node, error)
	// Token creates a one-time enrollment token.
	Token(t testing.TB, tags ...certs.Tag) string
	// RevokeDevice revokes n's device at the CA.
	RevokeDevice(t testing.TB, n Node)
	// RevokeUser revokes the user with that email at the CA.
	RevokeUser(t testing.TB, email string)
	// RestartServer stops the server gracefully (what SIGTERM does), keeps
	// it down for pause and starts it again from its state directory on
	// the address the agents know.
	RestartServer(t testing.TB, pause time.Duration)
	// PublishPolicy publishes a policy source and returns its version.
	PublishPolicy(t testing.TB, src []byte) uint64
	// Devices lists what the CA holds about every device.
	Devices(t testing.TB) []Device
	// IdP is the lab's OpenID Provider (nil without Options.Users).
	IdP() *oidctest.Provider
	// Login logs u in on n the way a person does (the agent's login, the
	// provider's sign-in page, the browser delivering the redirect to the
	// CA's callback) and waits for the outcome: nil once n holds u's user
	// certificate, otherwise what went wrong.
	Login(t testing.TB, n Node, u oidctest.User) error
}

// Node is one running agent.
type Node interface {
	// Hostname is the name the agent enrolled with.
	Hostname() string
	// DeviceID, WireGuardKey and Addrs are its certified identity.
	DeviceID() certs.DeviceID
	WireGuardKey() certs.WireGuardKey
	Addrs() []netip.Addr
	// V4 is its certified IPv4 overlay address.
	V4() netip.Addr
	// LocalAPI is a client of the agent's local API (what the CLI uses).
	LocalAPI() *agent.Client
	// Status reads the agent's status through its local API.
	Status(t testing.TB) *agent.Status
	// Listen opens a TCP listener on the node's overlay IPv4 address, as a
	// program on that machine would.
	Listen(port uint16) (net.Listener, error)
	// Dial opens a TCP connection from the node into the mesh.
	Dial(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	// ListenUDP opens a UDP socket on the node's overlay IPv4 address.
	ListenUDP(port uint16) (net.PacketConn, error)
	// DialUDP opens a UDP socket from the node to dst.
	DialUDP(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	// WireGuardPeers lists the keys configured in the node's WireGuard
	// device, read from the device itself.
	WireGuardPeers(t testing.TB) []certs.WireGuardKey
	// Stop stops the agent and waits for it.
	Stop()
}

// New starts a lab on backend b; it stops when the test ends.
func New(t testing.TB, b Backend, o Options) Lab {
	t.Helper()
	switch b {
	case InProcess:
		return NewInProc(t, InProcOptions{Options: o})
	case NetNS:
		return NewNetNS(t, o)
	}
	t.Fatalf("meshlab: unknown backend %q", b)
	return nil
}

// ForEachBackend runs scenario once on each of [Backends], as parallel
// subtests named after the backend, each on a fresh lab.
func ForEachBackend(t *testing.T, o Options, scenario func(t *testing.T, lab Lab)) {
	t.Helper()
	for _, b := range Backends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			scenario(t, New(t, b, o))
		})
	}
}

// Main runs a test binary whose tests may use the NetNS backend: it first
// removes what dead earlier runs left behind, and at the end the binaries
// it built.
func Main(m *testing.M) {
	e2e.RemoveLeftovers()
	code := m.Run()
	e2e.RemoveSharedBinaries()
	os.Exit(code)
}

// Eventually polls fn every 100ms until it returns nil, failing the test
// after timeout with fn's last error.
func Eventually(t testing.TB, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	if err := netns.WaitFor(ctx, 100*time.Millisecond, fn); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// PeerNamed finds the peer of st whose hostname is host.
func PeerNamed(st *agent.Status, host string) (agent.PeerStatus, error) {
	for _, p := range st.Peers {
		if string(p.Hostname) == host {
			return p, nil
		}
	}
	return agent.PeerStatus{}, fmt.Errorf("%s: no verified peer %s (peers %v, refused %v)", st.Self.Hostname, host, st.Peers, st.Rejected)
}
