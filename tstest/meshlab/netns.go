package meshlab

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/netns"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

// The NetNS backend: the binaries as a user runs them, through the
// process fixture of tstest/e2e (which tstest/bench/netbench drives too).
// The server's admin commands run as `certmesh-server ...` against its
// state directory; each agent is `certmesh agent --tun ...` in its own
// namespace.

var (
	_ Lab  = (*NetNSLab)(nil)
	_ Node = (*NetNSNode)(nil)
)

// startTimeout bounds starting the server, and each agent's enrollment
// unless NodeOptions.Wait says otherwise.
const startTimeout = time.Minute

// NetNSLab is a lab of processes in network namespaces.
type NetNSLab struct {
	// Mesh is the process fixture: the network (Mesh.Net, where a test
	// adds NAT routers, LANs, impairment), the server, the agents.
	Mesh *e2e.Mesh
	idp  *oidctest.Provider
}

// NetNSNode is one agent process.
type NetNSNode struct {
	Agent *e2e.Agent
	lab   *NetNSLab
}

// NewNetNS starts certmesh-server in its own namespace (the binaries are
// built once per test binary). It skips the test (fails it under CI=1)
// without root, TUN or wg.
func NewNetNS(t testing.TB, o Options) *NetNSLab {
	t.Helper()
	m := e2e.NewTestMesh(t)
	l := &NetNSLab{Mesh: m}
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	if err := m.InitServer(ctx); err != nil {
		t.Fatal(err)
	}
	if len(o.Users) > 0 {
		l.idp = newIdP(t, o.Users)
		l.serveIdP(t)
	}
	if err := m.RunServer(ctx); err != nil {
		t.Fatal(err)
	}
	return l
}

// serveIdP makes the CA a relying party of the lab's provider.
//
// The provider listens on the test process's 127.0.0.1:PORT and its issuer
// is https://127.0.0.1:PORT; the server runs in its own namespace, whose
// loopback is another one. A forwarder listening on 127.0.0.1:PORT inside
// the server's namespace relays to the provider, byte for byte, so that
// the issuer the CA dials, the one in the ID tokens and the provider's TLS
// certificate (for 127.0.0.1) all agree. The person's browser is the test
// process too: it signs in at the provider directly, and delivers the
// redirect to the CA's callback from the agent's namespace
// ([e2e.Mesh.Login]).
func (l *NetNSLab) serveIdP(t testing.TB) {
	t.Helper()
	m := l.Mesh
	iss, err := url.Parse(l.idp.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := m.Server.Host.ForwardTCP(iss.Host, iss.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Close() })
	redirect := (&url.URL{Scheme: "https", Host: netip.AddrPortFrom(m.Server.Host.Addr, e2e.ServerPort).String(),
		Path: wire.PathLoginCallback}).String()
	if err := m.PatchServerConfig(map[string]any{"oidc": relyingParty(l.idp, redirect)}); err != nil {
		t.Fatal(err)
	}
}

// Backend is [NetNS].
func (l *NetNSLab) Backend() Backend { return NetNS }

// Join adds a host called name and runs an agent there.
func (l *NetNSLab) Join(t testing.TB, name string, o NodeOptions) Node {
	t.Helper()
	n, err := l.TryJoin(t, name, o)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TryJoin is Join returning the agent's error: the tail of its log if it
// exited.
func (l *NetNSLab) TryJoin(t testing.TB, name string, o NodeOptions) (Node, error) {
	t.Helper()
	return l.join(t, name, nil, o, nil)
}

// JoinOn runs an agent on host h, which the test placed in the network
// itself (say, behind a NAT router: Mesh.Net.AddRouter, then
// Router.AddHost), with args added to its command line (flags the
// scenario is about).
func (l *NetNSLab) JoinOn(t testing.TB, h *netns.Host, o NodeOptions, args ...string) Node {
	t.Helper()
	n, err := l.join(t, h.Name, h, o, args)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (l *NetNSLab) join(t testing.TB, name string, h *netns.Host, o NodeOptions, args []string) (Node, error) {
	t.Helper()
	if o.Clock != nil || o.TPM != nil || o.NoToken {
		t.Fatalf("meshlab: NodeOptions Clock, TPM and NoToken are in-process only")
	}
	wait := o.Wait
	if wait == 0 {
		wait = startTimeout
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	var tags []string
	for _, tag := range o.Tags {
		tags = append(tags, string(tag))
	}
	ao := e2e.AgentOptions{Tags: tags, Token: o.Token, Args: args}
	var a *e2e.Agent
	var err error
	if h == nil {
		a, err = l.Mesh.AddAgentWith(ctx, name, ao)
	} else {
		a, err = l.Mesh.StartAgentWith(ctx, h, ao)
	}
	if err != nil {
		return nil, err
	}
	return &NetNSNode{Agent: a, lab: l}, nil
}

// Token runs `certmesh-server tokens create`.
func (l *NetNSLab) Token(t testing.TB, tags ...certs.Tag) string {
	t.Helper()
	var ss []string
	for _, tag := range tags {
		ss = append(ss, string(tag))
	}
	tok, err := l.Mesh.TaggedToken(t.Context(), ss...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// RevokeDevice runs `certmesh-server devices revoke`.
func (l *NetNSLab) RevokeDevice(t testing.TB, n Node) {
	t.Helper()
	if err := l.Mesh.Revoke(t.Context(), n.(*NetNSNode).Agent); err != nil {
		t.Fatal(err)
	}
}

// RevokeUser runs `certmesh-server users revoke`.
func (l *NetNSLab) RevokeUser(t testing.TB, email string) {
	t.Helper()
	if err := l.Mesh.RevokeUser(t.Context(), email); err != nil {
		t.Fatal(err)
	}
}

// RestartServer sends certmesh-server SIGTERM, which must exit cleanly,
// and runs it again ([e2e.RestartServer]: it returns once every agent's
// watch is back on the new server).
func (l *NetNSLab) RestartServer(t testing.TB, pause time.Duration) {
	t.Helper()
	r, err := e2e.RestartServer(t.Context(), l.Mesh, syscall.SIGTERM, pause)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server down %v, every agent's watch back %v after it started", r.Down.Round(time.Millisecond), r.Back.Round(time.Millisecond))
}

// PublishPolicy runs `certmesh-server policy publish`.
func (l *NetNSLab) PublishPolicy(t testing.TB, src []byte) uint64 {
	t.Helper()
	v, err := l.Mesh.PublishPolicy(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Devices runs `certmesh-server devices list --json`.
func (l *NetNSLab) Devices(t testing.TB) []Device {
	t.Helper()
	devs, err := l.Mesh.Devices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return devs
}

// IdP is the lab's OpenID Provider.
func (l *NetNSLab) IdP() *oidctest.Provider { return l.idp }

// Login runs `certmesh login` in n's namespace ([e2e.Mesh.Login]) and checks
// that it reports u logged in with u's groups.
func (l *NetNSLab) Login(t testing.TB, node Node, u oidctest.User) error {
	t.Helper()
	if l.idp == nil {
		t.Fatal("meshlab: Login needs Options.Users")
	}
	a := node.(*NetNSNode).Agent
	out, err := l.Mesh.Login(t.Context(), a, func(ctx context.Context, authURL string) (*url.URL, error) {
		return l.idp.Login(ctx, authURL, u.Email, u.Password)
	})
	if err != nil {
		return err
	}
	want := fmt.Sprintf("Logged in as %s (groups: %s)", u.Email, strings.Join(u.Groups, ", "))
	if !strings.Contains(out, want) {
		return fmt.Errorf("certmesh login on %s printed %q, want %q", a.Name, out, want)
	}
	return nil
}
