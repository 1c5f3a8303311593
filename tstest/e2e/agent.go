package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/netns"
)

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
	// Token enrolls with this token instead of a fresh one (Tags unused).
	Token string
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
	tok := opts.Token
	if tok == "" {
		var err error
		if tok, err = m.TaggedToken(ctx, opts.Tags...); err != nil {
			return nil, err
		}
	}
	iface := m.NextInterface()
	a := &Agent{Name: h.Name, Host: h, Iface: iface, StateDir: m.AgentStateDir(h.Name), Token: tok}
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

// AgentStateDir is the state directory of the agent on host name (whose
// local API socket a caller may poll while the agent is still starting).
func (m *Mesh) AgentStateDir(name string) string { return filepath.Join(m.Dir, name, "state") }

// RestartAgent starts a stopped agent again from its state directory (no
// token needed), with args added to its command line.
func (m *Mesh) RestartAgent(ctx context.Context, a *Agent, args ...string) error {
	if err := a.Stop(); err != nil {
		return err
	}
	return m.runAgent(ctx, a, append(m.AgentArgs(a, ""), args...))
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
