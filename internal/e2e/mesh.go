package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/netns"
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

var fingerprintRE = regexp.MustCompile(`Root fingerprint \(SHA-256\): ([0-9a-fA-F:]+)`)

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

	mu     sync.Mutex
	agents []*Agent
	nextIf int
}

// Server is the certmesh-server process.
type Server struct {
	Host     *netns.Host
	StateDir string
	Proc     *netns.Process
}

// Agent is one certmesh agent process in kernel TUN mode.
type Agent struct {
	Name     string
	Host     *netns.Host
	Iface    string // TUN interface name, unique on the machine
	StateDir string
	Proc     *netns.Process
	// Token is the enrollment token the agent was started with.
	Token string

	// From the agent's status once it runs.
	ID    certs.DeviceID
	Addrs []netip.Addr // overlay addresses, IPv4 first
	Key   certs.WireGuardKey
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

// StartServer initialises a CA in Dir/srv and runs certmesh-server in its
// own namespace, waiting until its admin socket answers: [Mesh.InitServer]
// then [Mesh.RunServer].
func (m *Mesh) StartServer(ctx context.Context) error {
	if err := m.InitServer(ctx); err != nil {
		return err
	}
	return m.RunServer(ctx)
}

// InitServer adds the server's host and runs `certmesh-server init` in
// Dir/srv/state, without starting the server: a test can change its
// configuration ([Mesh.PatchServerConfig]) or start helpers in its
// namespace before [Mesh.RunServer]. It sets Server (without Proc),
// Fingerprint and URL.
func (m *Mesh) InitServer(ctx context.Context) error {
	if m.Bin == nil || m.Dir == "" {
		return errors.New("e2e: mesh needs Options.Bin and Options.Dir")
	}
	if m.Server != nil {
		return errors.New("e2e: the server is already initialised")
	}
	h, err := m.Net.AddHost(ctx, serverHostName)
	if err != nil {
		return err
	}
	s := &Server{Host: h, StateDir: filepath.Join(m.Dir, serverHostName, "state")}
	out, err := run(ctx, m.Bin.Server, "init", "--state", s.StateDir, "--trust-domain", m.opts.TrustDomain)
	if err != nil {
		return err
	}
	mt := fingerprintRE.FindStringSubmatch(out)
	if mt == nil {
		return fmt.Errorf("e2e: no root fingerprint in the output of init: %q", out)
	}
	m.Fingerprint = mt[1]
	m.URL = "https://" + netip.AddrPortFrom(h.Addr, ServerPort).String()
	m.Server = s
	return nil
}

// ServerConfigFile is the server's configuration file, written by init and
// read once by run.
func (m *Mesh) ServerConfigFile() string {
	return filepath.Join(m.Server.StateDir, "config.json")
}

// PatchServerConfig sets top-level settings of the server's config.json
// (for example "oidc" to a ca.OIDCConfig), keeping the others. Call it
// between InitServer and RunServer: the server reads its configuration
// once, at start.
func (m *Mesh) PatchServerConfig(patch map[string]any) error {
	if m.Server == nil {
		return errors.New("e2e: initialise the server first")
	}
	if m.Server.Proc != nil {
		return errors.New("e2e: the server already runs; it would not see the change")
	}
	path := m.ServerConfigFile()
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("e2e: %s: %w", path, err)
	}
	for k, v := range patch {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("e2e: config setting %q: %w", k, err)
		}
		cfg[k] = b
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), fi.Mode().Perm())
}

// RunServer runs `certmesh-server run` for the state InitServer created,
// in the server's namespace, and waits until its admin socket answers.
func (m *Mesh) RunServer(ctx context.Context) error {
	s := m.Server
	if s == nil {
		return errors.New("e2e: initialise the server first")
	}
	if s.Proc != nil {
		return errors.New("e2e: the server already runs")
	}
	h := s.Host
	listen := netip.AddrPortFrom(h.Addr, ServerPort)
	var err error
	s.Proc, err = h.Start(context.Background(), filepath.Join(m.Dir, serverHostName, "server.log"),
		m.Bin.Server, "run", "--state", s.StateDir, "--listen", listen.String())
	if err != nil {
		return err
	}
	err = waitProc(ctx, s.Proc, func() error {
		_, err := m.ServerCLI(ctx, "devices", "list", "--state", s.StateDir, "--json")
		return err
	})
	if err != nil {
		return fmt.Errorf("e2e: waiting for certmesh-server: %w", err)
	}
	m.log.Info("e2e: certmesh-server running", "url", m.URL)
	return nil
}

// ServerCLI runs certmesh-server with args from the test's own namespace
// (admin commands reach the server through the unix socket in its state
// directory) and returns its stdout.
func (m *Mesh) ServerCLI(ctx context.Context, args ...string) (string, error) {
	return run(ctx, m.Bin.Server, args...)
}

// Token creates a one-time enrollment token with `token create`.
func (m *Mesh) Token(ctx context.Context) (string, error) {
	return m.TaggedToken(ctx)
}

// TaggedToken creates a one-time enrollment token whose device gets tags
// (`token create --tags`).
func (m *Mesh) TaggedToken(ctx context.Context, tags ...string) (string, error) {
	args := []string{"token", "create", "--state", m.Server.StateDir}
	if len(tags) > 0 {
		args = append(args, "--tags", strings.Join(tags, ","))
	}
	out, err := m.ServerCLI(ctx, args...)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(out)
	if tok == "" || strings.ContainsAny(tok, " \n") {
		return "", fmt.Errorf("e2e: unexpected output of token create: %q", out)
	}
	return tok, nil
}

// Device is the part of `devices list --json` the tests look at.
// Addresses and WireGuardKey are what the CA put in the device's current
// certificate.
type Device struct {
	ID           certs.DeviceID     `json:"id"`
	Hostname     string             `json:"hostname"`
	Addresses    []netip.Addr       `json:"addresses"`
	WireGuardKey certs.WireGuardKey `json:"wireguard_key"`
	State        string             `json:"state"`
}

// Devices runs `devices list --json`.
func (m *Mesh) Devices(ctx context.Context) ([]Device, error) {
	out, err := m.ServerCLI(ctx, "devices", "list", "--state", m.Server.StateDir, "--json")
	if err != nil {
		return nil, err
	}
	var devs []Device
	if err := json.Unmarshal([]byte(out), &devs); err != nil {
		return nil, fmt.Errorf("e2e: decoding devices list: %w", err)
	}
	return devs, nil
}

// Revoke runs `devices revoke ID` for a.
func (m *Mesh) Revoke(ctx context.Context, a *Agent) error {
	_, err := m.ServerCLI(ctx, "devices", "revoke", "--state", m.Server.StateDir, string(a.ID))
	return err
}

// RevokeUser runs `users revoke EMAIL`.
func (m *Mesh) RevokeUser(ctx context.Context, email string) error {
	_, err := m.ServerCLI(ctx, "users", "revoke", "--state", m.Server.StateDir, email)
	return err
}

var publishedRE = regexp.MustCompile(`published policy version ([0-9]+)`)

// PublishPolicy writes src to a file under Dir and runs `policy publish`
// with it, returning the version the server gave it.
func (m *Mesh) PublishPolicy(ctx context.Context, src []byte) (uint64, error) {
	f, err := os.CreateTemp(m.Dir, "policy-*.hujson")
	if err != nil {
		return 0, err
	}
	_, err = f.Write(src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	out, err := m.ServerCLI(ctx, "policy", "publish", "--state", m.Server.StateDir, f.Name())
	if err != nil {
		return 0, err
	}
	mt := publishedRE.FindStringSubmatch(out)
	if mt == nil {
		return 0, fmt.Errorf("e2e: no version in the output of policy publish: %q", out)
	}
	return strconv.ParseUint(mt[1], 10, 64)
}

// Agents returns the agents added so far.
func (m *Mesh) Agents() []*Agent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.agents)
}

// AddAgent adds a host called name and starts an agent on it (see
// StartAgent).
func (m *Mesh) AddAgent(ctx context.Context, name string) (*Agent, error) {
	h, err := m.Net.AddHost(ctx, name)
	if err != nil {
		return nil, err
	}
	return m.StartAgent(ctx, h)
}

// AgentOptions configure one agent of [Mesh.AddAgentWith].
type AgentOptions struct {
	// Tags are given to the device through its enrollment token.
	Tags []string
	// Args are appended to the agent's command line, after
	// Options.AgentArgs.
	Args []string
}

// AddAgentWith is [Mesh.AddAgent] with options.
func (m *Mesh) AddAgentWith(ctx context.Context, name string, opts AgentOptions) (*Agent, error) {
	h, err := m.Net.AddHost(ctx, name)
	if err != nil {
		return nil, err
	}
	return m.StartAgentWith(ctx, h, opts)
}

// StartAgent enrolls an agent on h with a fresh token and runs it in kernel
// TUN mode, waiting until its local API answers. Its interface gets a name
// unique on the machine: wireguard-go's UAPI socket
// (/var/run/wireguard/NAME.sock) is not per network namespace.
func (m *Mesh) StartAgent(ctx context.Context, h *netns.Host) (*Agent, error) {
	return m.StartAgentWith(ctx, h, AgentOptions{})
}

// NextInterface returns a TUN interface name unique on the machine, for an
// agent the test starts itself.
func (m *Mesh) NextInterface() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextIf++
	return m.Net.Prefix() + "w" + strconv.Itoa(m.nextIf)
}

// StartAgentWith is [Mesh.StartAgent] with options.
func (m *Mesh) StartAgentWith(ctx context.Context, h *netns.Host, opts AgentOptions) (*Agent, error) {
	if m.Server == nil || m.Server.Proc == nil {
		return nil, errors.New("e2e: start the server first")
	}
	tok, err := m.TaggedToken(ctx, opts.Tags...)
	if err != nil {
		return nil, err
	}
	iface := m.NextInterface()
	a := &Agent{Name: h.Name, Host: h, Iface: iface, StateDir: filepath.Join(m.Dir, h.Name, "state"), Token: tok}
	args := m.AgentArgs(a, tok)
	args = append(args, opts.Args...)
	if err := m.runAgent(ctx, a, args); err != nil {
		return a, err
	}
	m.mu.Lock()
	m.agents = append(m.agents, a)
	m.mu.Unlock()
	return a, nil
}

// RestartAgent starts a stopped agent again from its state directory (no
// token needed).
func (m *Mesh) RestartAgent(ctx context.Context, a *Agent) error {
	if err := a.Stop(); err != nil {
		return err
	}
	return m.runAgent(ctx, a, m.AgentArgs(a, ""))
}

// AgentArgs is the command line of certmesh (without the program name)
// that runs a in kernel TUN mode: enrolling with token unless it is empty,
// with Options.AgentArgs at the end.
func (m *Mesh) AgentArgs(a *Agent, token string) []string {
	args := []string{"agent", "--state", a.StateDir, "--server", m.URL, "--root-fingerprint", m.Fingerprint}
	if token != "" {
		args = append(args, "--token", token)
	}
	args = append(args, "--tun", a.Iface, "--hostname", a.Name, "--listen-port", strconv.Itoa(WireGuardPort))
	return append(args, m.opts.AgentArgs...)
}

func (m *Mesh) runAgent(ctx context.Context, a *Agent, args []string) error {
	p, err := a.Host.Start(context.Background(), a.LogPath(m), m.Bin.Certmesh, args...)
	if err != nil {
		return err
	}
	a.Proc = p
	err = waitProc(ctx, p, func() error {
		st, err := a.Status(ctx)
		if err != nil {
			return err
		}
		if st.Self.DeviceID == "" || len(st.Self.Addresses) == 0 {
			return fmt.Errorf("agent %s has no identity yet", a.Name)
		}
		a.ID, a.Key = st.Self.DeviceID, st.Self.WireGuardKey
		a.Addrs = slices.Clone(st.Self.Addresses)
		slices.SortStableFunc(a.Addrs, func(x, y netip.Addr) int { return boolCmp(x.Is4(), y.Is4()) })
		return nil
	})
	if err != nil {
		return fmt.Errorf("e2e: waiting for agent %s: %w", a.Name, err)
	}
	m.log.Info("e2e: agent running", "agent", a.Name, "device", a.ID, "addresses", a.Addrs, "iface", a.Iface)
	return nil
}

// boolCmp orders true first.
func boolCmp(x, y bool) int {
	switch {
	case x == y:
		return 0
	case x:
		return -1
	default:
		return 1
	}
}

// LogPath is where the agent's output goes.
func (a *Agent) LogPath(m *Mesh) string { return filepath.Join(m.Dir, a.Name, "agent.log") }

// V4 returns the agent's overlay IPv4 address.
func (a *Agent) V4() netip.Addr { return a.addr(true) }

// V6 returns the agent's overlay IPv6 address.
func (a *Agent) V6() netip.Addr { return a.addr(false) }

func (a *Agent) addr(v4 bool) netip.Addr {
	for _, ip := range a.Addrs {
		if ip.Is4() == v4 {
			return ip
		}
	}
	return netip.Addr{}
}

// Status asks the agent's local API (a unix socket in its state directory,
// reachable from any network namespace).
func (a *Agent) Status(ctx context.Context) (*agent.Status, error) {
	return agent.NewClient(a.StateDir).Status(ctx)
}

// StatusCLI runs `certmesh status --json` inside the agent's namespace.
func (a *Agent) StatusCLI(ctx context.Context, bin *Binaries) (*agent.Status, error) {
	out, err := a.Host.Command(ctx, bin.Certmesh, "status", "--state", a.StateDir, "--json").Output()
	if err != nil {
		return nil, fmt.Errorf("e2e: certmesh status on %s: %w", a.Name, withStderr(err))
	}
	var st agent.Status
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("e2e: decoding status of %s: %w", a.Name, err)
	}
	return &st, nil
}

// Stop sends SIGTERM to the agent and waits for it to exit.
func (a *Agent) Stop() error {
	if a.Proc == nil {
		return nil
	}
	return a.Proc.Stop()
}

// WGPeers returns the public keys `wg show IFACE peers` lists in the
// agent's namespace.
func (a *Agent) WGPeers(ctx context.Context) ([]string, error) {
	out, err := a.Host.Run(ctx, "wg", "show", a.Iface, "peers")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// WGAllowedIPs returns `wg show IFACE allowed-ips` as key -> prefixes.
func (a *Agent) WGAllowedIPs(ctx context.Context) (map[string][]string, error) {
	out, err := a.Host.Run(ctx, "wg", "show", a.Iface, "allowed-ips")
	if err != nil {
		return nil, err
	}
	res := map[string][]string{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		ips := f[1:]
		if len(ips) == 1 && ips[0] == "(none)" {
			ips = nil
		}
		slices.Sort(ips)
		res[f[0]] = ips
	}
	return res, nil
}

// CheckPeers returns nil if st lists exactly the agents want as verified
// peers, each with the key and addresses that agent has, and (if
// handshake) a completed WireGuard handshake.
func CheckPeers(st *agent.Status, want []*Agent, handshake bool) error {
	if !st.Coordinator.Connected {
		return fmt.Errorf("%s: not connected to the coordinator (%s)", st.Self.Hostname, st.Coordinator.LastError)
	}
	var errs []error
	seen := map[certs.DeviceID]bool{}
	for _, p := range st.Peers {
		seen[p.DeviceID] = true
		i := slices.IndexFunc(want, func(a *Agent) bool { return a.ID == p.DeviceID })
		if i < 0 {
			errs = append(errs, fmt.Errorf("unexpected peer %s (%s)", p.Hostname, p.DeviceID))
			continue
		}
		w := want[i]
		switch {
		case !p.Verified:
			errs = append(errs, fmt.Errorf("peer %s not verified", w.Name))
		case p.WireGuardKey != w.Key:
			errs = append(errs, fmt.Errorf("peer %s has key %s, its own status says %s", w.Name, p.WireGuardKey, w.Key))
		case !sameAddrs(p.Addresses, w.Addrs):
			errs = append(errs, fmt.Errorf("peer %s has addresses %v, its own status says %v", w.Name, p.Addresses, w.Addrs))
		case handshake && p.LastHandshake.IsZero():
			errs = append(errs, fmt.Errorf("no handshake with peer %s yet", w.Name))
		}
	}
	for _, w := range want {
		if !seen[w.ID] {
			errs = append(errs, fmt.Errorf("peer %s (%s) missing", w.Name, w.ID))
		}
	}
	for _, r := range st.Rejected {
		errs = append(errs, fmt.Errorf("rejected %s: %s: %s", r.Label, r.Reason, r.Error))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", st.Self.Hostname, err)
	}
	return nil
}

func sameAddrs(a, b []netip.Addr) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, netip.Addr.Compare)
	slices.SortFunc(b, netip.Addr.Compare)
	return slices.Equal(a, b)
}

// WaitConverged waits until every agent in agents sees exactly the others
// as verified peers (with a handshake, if asked), and `wg show` on every
// agent lists exactly their keys.
func (m *Mesh) WaitConverged(ctx context.Context, agents []*Agent, handshake bool) error {
	err := netns.WaitFor(ctx, pollInterval, func() error {
		var errs []error
		for _, a := range agents {
			others := slices.DeleteFunc(slices.Clone(agents), func(o *Agent) bool { return o == a })
			st, err := a.Status(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", a.Name, err))
				continue
			}
			if err := CheckPeers(st, others, handshake); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := a.checkWG(ctx, others); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("e2e: mesh did not converge: %w", err)
	}
	return nil
}

func (a *Agent) checkWG(ctx context.Context, want []*Agent) error {
	keys, err := a.WGPeers(ctx)
	if err != nil {
		return err
	}
	var wantKeys []string
	for _, w := range want {
		wantKeys = append(wantKeys, w.Key.String())
	}
	slices.Sort(keys)
	slices.Sort(wantKeys)
	if !slices.Equal(keys, wantKeys) {
		return fmt.Errorf("%s: wg show %s peers = %v, want %v", a.Name, a.Iface, keys, wantKeys)
	}
	return nil
}

// WaitGone waits until no agent in observers lists gone as a peer, neither
// in its status nor in `wg show`.
func (m *Mesh) WaitGone(ctx context.Context, observers []*Agent, gone *Agent) error {
	err := netns.WaitFor(ctx, pollInterval, func() error {
		var errs []error
		for _, a := range observers {
			st, err := a.Status(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", a.Name, err))
				continue
			}
			if slices.ContainsFunc(st.Peers, func(p agent.PeerStatus) bool { return p.DeviceID == gone.ID }) {
				errs = append(errs, fmt.Errorf("%s still lists %s as a peer", a.Name, gone.Name))
			}
			keys, err := a.WGPeers(ctx)
			if err != nil {
				errs = append(errs, err)
			} else if slices.Contains(keys, gone.Key.String()) {
				errs = append(errs, fmt.Errorf("wg show %s on %s still has %s's key", a.Iface, a.Name, gone.Name))
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("e2e: %s did not disappear: %w", gone.Name, err)
	}
	return nil
}

// Logs returns the name and path of every log file the mesh wrote.
func (m *Mesh) Logs() map[string]string {
	logs := map[string]string{}
	if m.Server != nil && m.Server.Proc != nil {
		logs["certmesh-server"] = m.Server.Proc.LogPath
	}
	for _, a := range m.Agents() {
		logs["agent "+a.Name] = a.LogPath(m)
	}
	return logs
}

// waitProc polls fn until it succeeds, giving up early if p exits.
func waitProc(ctx context.Context, p *netns.Process, fn func() error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := netns.WaitFor(ctx, pollInterval, func() error {
		select {
		case <-p.Done():
			cancel()
			return fmt.Errorf("process exited (%v); log %s:\n%s", p.Wait(), p.LogPath, Tail(p.LogPath, 20))
		default:
		}
		return fn()
	})
	return err
}

// Tail returns the last n lines of a file (or why it cannot be read).
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// run runs a program in the caller's namespace and returns its stdout.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 2 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// withStderr adds the stderr of a failed exec.Cmd.Output to err.
func withStderr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}
