package e2e

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

const (
	// DefaultTrustDomain is the trust domain of a fixture mesh.
	DefaultTrustDomain = "demo.test"
	// ServerPort is the TCP port certmesh-server listens on in its namespace.
	ServerPort = 8443
	// WireGuardPort is the UDP port of every kernel-mode agent.
	WireGuardPort = 51820
	// UAPIDir is where wireguard-go (and the agent) put their UAPI sockets.
	UAPIDir = "/var/run/wireguard"

	// FirstContactTimeout bounds how long the first packets between two
	// agents that have just configured each other may take to get through.
	// Normally that is one handshake, a few milliseconds. But both agents
	// initiate a handshake the moment they add each other, and when the two
	// initiations cross, wireguard-go's parallel handshake workers can race
	// (ConsumeMessageResponse checks the handshake state under a read lock
	// and writes it later without checking again), leaving one direction
	// with a session the other end does not know. wireguard-go recovers by
	// itself once the sender has heard nothing back for 15 seconds
	// (keepalive timeout + rekey timeout), hence this bound.
	FirstContactTimeout = 30 * time.Second

	serverHostName = "srv"
	pollInterval   = 100 * time.Millisecond
)

// Options configures a [Mesh].
type Options struct {
	// Bin are the programs to run (required).
	Bin *Binaries
	// Dir receives the state directories and logs (required).
	Dir string
	// TrustDomain defaults to DefaultTrustDomain.
	TrustDomain string
	// AgentArgs are appended to every agent's command line (e.g. "--debug").
	AgentArgs []string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Mesh is a certmesh-server and its agents, each in its own namespace of a
// [netns.Network]. Everything it starts is stopped by the network's Close.
type Mesh struct {
	Net  *netns.Network
	Bin  *Binaries
	Dir  string
	opts Options
	log  *slog.Logger

	// Set by StartServer.
	Server      *Server
	Fingerprint string // root fingerprint printed by init
	URL         string // https://IP:PORT of the server
	// Coord is the coordinator-only server of a split mesh
	// ([Mesh.StartSplitServers]), nil when the server runs both roles.
	Coord *Coordinator

	mu     sync.Mutex
	agents []*Agent
	nextIf int
}

// New returns a mesh on net without starting anything.
func New(net *netns.Network, opts Options) *Mesh {
	if opts.TrustDomain == "" {
		opts.TrustDomain = DefaultTrustDomain
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Mesh{Net: net, Bin: opts.Bin, Dir: opts.Dir, opts: opts, log: opts.Logger}
}

// Start builds a whole mesh on net: the server and n agents (named a1..an)
// that all see each other as verified peers.
func Start(ctx context.Context, net *netns.Network, opts Options, n int) (*Mesh, error) {
	m := New(net, opts)
	if err := m.StartServer(ctx); err != nil {
		return m, err
	}
	for i := 1; i <= n; i++ {
		if _, err := m.AddAgent(ctx, "a"+strconv.Itoa(i)); err != nil {
			return m, err
		}
	}
	return m, m.WaitConverged(ctx, m.Agents(), false)
}

// Logs returns the name and path of every log file the mesh wrote.
func (m *Mesh) Logs() map[string]string {
	logs := map[string]string{}
	if m.Server != nil && m.Server.Proc != nil {
		logs["certmesh-server"] = m.Server.Proc.LogPath
	}
	if m.Coord != nil && m.Coord.Proc != nil {
		logs["coordinator"] = m.Coord.Proc.LogPath
	}
	for _, a := range m.Agents() {
		logs["agent "+a.Name] = a.LogPath(m)
	}
	return logs
}
