package meshlab

// The in-process backend: a real server (server: CA, coordinator, admin
// socket) on a loopback TLS listener, and real agents in userspace mode
// (wireguard-go on gVisor's netstack) talking to it and to each other over
// loopback UDP. Tests reach a node's overlay through its netstack
// (InProcNode.Dial, InProcNode.Listen).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/logbuf"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/server"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

// DefaultTrustDomain is the trust domain of an in-process lab.
const DefaultTrustDomain = certs.TrustDomain("corp.example")

// InProcOptions configure an in-process lab.
type InProcOptions struct {
	Options
	TrustDomain certs.TrustDomain
	// Config edits the server's configuration before it starts; baseURL is
	// where it will listen (https://127.0.0.1:port).
	Config func(cfg *ca.Config, baseURL string)
	// Clock is the server's clock (default: real time).
	Clock *testclock.Clock
	// BodyTimeout is the server's (default: its own default).
	BodyTimeout time.Duration
	// ServerLog, if set, also gets the server's log (text, debug level).
	ServerLog io.Writer
}

// InProc is an in-process lab: a running server and its agents.
type InProc struct {
	t           testing.TB
	Dir         string
	TrustDomain certs.TrustDomain
	Server      *server.Server
	URL         *url.URL
	Fingerprint certs.Fingerprint
	Roots       *certs.Roots

	mu    sync.Mutex
	nodes []*InProcNode
	clock *testclock.Clock   // the server's, nil for real time
	idp   *oidctest.Provider // nil without Options.Users
}

// NewInProc starts a server in a fresh state directory; it stops when the
// test ends.
func NewInProc(t testing.TB, o InProcOptions) *InProc {
	t.Helper()
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	var idp *oidctest.Provider
	if len(o.Users) > 0 {
		idp = newIdP(t, o.Users)
		edit := o.Config
		o.Config = func(cfg *ca.Config, base string) {
			cfg.OIDC = relyingParty(idp, base+wire.PathLoginCallback)
			if edit != nil {
				edit(cfg, base)
			}
		}
	}
	dir, err := os.MkdirTemp("", "meshlab") // short: agents' unix sockets live below it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	state := filepath.Join(dir, "server")
	fp, err := ca.Init(state, ca.InitOptions{TrustDomain: o.TrustDomain})
	if err != nil {
		t.Fatalf("meshlab: init: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + ln.Addr().String()
	if o.Config != nil {
		cfg, err := ca.LoadConfig(state)
		if err != nil {
			t.Fatal(err)
		}
		o.Config(cfg, base)
		data, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(state, "config.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	so := server.Options{StateDir: state, Listener: ln, Logger: newLoggerTo(t, "server", o.ServerLog), BodyTimeout: o.BodyTimeout}
	if o.Clock != nil {
		so.Now = o.Clock.Now
	}
	srv, err := startServer(so)
	if err != nil {
		ln.Close()
		t.Fatalf("meshlab: starting server: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	u, _ := url.Parse(base)
	return &InProc{t: t, Dir: dir, TrustDomain: o.TrustDomain, Server: srv, URL: u, Fingerprint: fp, Roots: srv.CA.Roots(), clock: o.Clock, idp: idp}
}

// Token creates a one-time enrollment token.
func (m *InProc) Token(t testing.TB, tags ...certs.Tag) string {
	t.Helper()
	tok, _, err := m.Server.CA.CreateToken(t.Context(), tags, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Browser is an HTTPS client that trusts the mesh's root and checks the
// server's name as agents do: a browser on a managed laptop.
func (m *InProc) Browser() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsclient.Config(m.Roots, nil, nil)}}
}

// NodeOptions configure one agent.
type NodeOptions struct {
	// Tags are given to the device through its enrollment token.
	Tags []certs.Tag
	// Wait bounds the enrollment, approval included (default 30s).
	Wait time.Duration
	// Token enrolls with this token instead of a fresh one.
	Token string

	// In-process only (the NetNS backend refuses them):

	// Clock is the agent's clock (default: real time).
	Clock *testclock.Clock
	// NoToken enrolls without any token (a TPM on the EK allow-list).
	NoToken bool
	// TPM keeps the device key in a TPM (tests: the simulator).
	TPM *agent.TPMConfig
}

// InProcNode is one agent running in the test process.
type InProcNode struct {
	Name     string
	StateDir string
	Agent    *agent.Agent
	Client   *agent.Client
	Logs     *LogBuffer
	Token    string // the enrollment token it used
	stop     context.CancelFunc
	done     chan struct{}
}

// AddNode enrolls and runs an agent; it stops when the test ends.
func (m *InProc) AddNode(t testing.TB, name string, o NodeOptions) *InProcNode {
	t.Helper()
	n, err := m.StartNode(t, name, o)
	if err != nil {
		t.Fatalf("meshlab: agent %s: %v", name, err)
	}
	return n
}

// StartNode is AddNode returning the agent's error instead of failing the
// test; it may be called from another goroutine (say, while an enrollment
// waits for approval) and waits up to o.Wait (default 30s) to enroll.
func (m *InProc) StartNode(t testing.TB, name string, o NodeOptions) (*InProcNode, error) {
	n := &InProcNode{Name: name, StateDir: filepath.Join(m.Dir, name), Logs: &LogBuffer{}, done: make(chan struct{}), Token: o.Token}
	if n.Token == "" && !o.NoToken {
		n.Token = m.Token(t, o.Tags...)
	}
	cfg := agent.Config{
		StateDir: n.StateDir, ServerURL: m.URL, RootFingerprint: m.Fingerprint, Token: n.Token,
		Hostname: certs.Hostname(name), Mode: wgdev.Userspace,
		AdvertiseAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Logger:         slog.New(slog.NewTextHandler(n.Logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ApprovalPoll:   200 * time.Millisecond,
		// Clocks in tests jump: notice within a second.
		RenewCheckInterval: time.Second,
		TPM:                o.TPM,
	}
	if o.Clock != nil {
		cfg.Now = o.Clock.Now
	}
	if o.Wait == 0 {
		o.Wait = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(t.Context(), o.Wait)
	defer cancel()
	a, err := agent.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	n.Agent, n.Client = a, agent.NewClient(n.StateDir)
	runCtx, stop := context.WithCancel(context.Background())
	n.stop = stop
	go func() {
		defer close(n.done)
		if err := a.Run(runCtx); err != nil {
			fmt.Fprintf(n.Logs, "Run: %v\n", err)
		}
	}()
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("--- agent %s log ---\n%s", name, n.Logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := n.Client.Status(t.Context())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("local API: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.mu.Lock()
	m.nodes = append(m.nodes, n)
	m.mu.Unlock()
	return n, nil
}

// Stop stops the agent and waits for it.
func (n *InProcNode) Stop() {
	n.stop()
	<-n.done
}

// Status reads the agent's status through its local API.
func (n *InProcNode) Status(t testing.TB) *agent.Status {
	t.Helper()
	st, err := n.Client.Status(t.Context())
	if err != nil {
		t.Fatalf("status of %s: %v", n.Name, err)
	}
	return st
}

// V4 is the node's certified IPv4 overlay address.
func (n *InProcNode) V4() netip.Addr {
	st, err := n.Agent.Status()
	if err != nil {
		panic(err)
	}
	for _, a := range st.Self.Addresses {
		if a.Is4() {
			return a
		}
	}
	panic("no IPv4 overlay address")
}

// Dial opens a TCP connection from n's netstack into the mesh.
func (n *InProcNode) Dial(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	c, err := n.Agent.Device().Net().DialContextTCPAddrPort(ctx, dst)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Listen opens a TCP listener on n's overlay address.
func (n *InProcNode) Listen(port uint16) (net.Listener, error) {
	ln, err := n.Agent.Device().Net().ListenTCPAddrPort(netip.AddrPortFrom(n.V4(), port))
	if err != nil {
		return nil, err
	}
	return ln, nil
}

// LogBuffer collects log lines from goroutines.
type LogBuffer = logbuf.Buffer

// newLogger logs to the test's output only when it fails.
func newLogger(t testing.TB, name string) *slog.Logger { return newLoggerTo(t, name, nil) }

// newLoggerTo is newLogger also writing to also, if not nil.
func newLoggerTo(t testing.TB, name string, also io.Writer) *slog.Logger {
	buf := &LogBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", name, buf.String())
		}
	})
	var w io.Writer = buf
	if also != nil {
		w = io.MultiWriter(buf, also)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
