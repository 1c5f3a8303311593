package hostile_test

// The test deployment: a real CA (ca.Init, ca.Open, ca.Handler over HTTPS
// configured like certmesh-server) whose config sends agents to the hostile
// coordinator, which holds the CA's server TLS key; two real agents in
// userspace mode, the victim and a legitimate peer; and a testca fixture
// around the CA's own root and intermediate key, to issue what the CA
// never would. Everything listens on 127.0.0.1.

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/logbuf"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/hostile"
	"github.com/certmesh/certmesh/tstest/testca"
)

const trustDomain = certs.TrustDomain("corp.example")

// waitFor bounds every wait for something that should happen.
const waitFor = 5 * time.Second

type fixture struct {
	StateDir string
	CA       *ca.CA
	CAURL    string // the CA's HTTPS listener, where agents enroll
	Coord    *hostile.Coordinator
	// PKI issues with the CA's real intermediate key.
	PKI      *testca.CA
	Overlays []netip.Prefix
	Victim   *node
	Peer     *node

	mu       sync.Mutex
	nextHost uint64
	syncs    int             // labels used by fixture.sync
	legit    map[string]bool // tokens the legitimate peer sent
}

// node is one running agent.
type node struct {
	Name     string
	StateDir string
	Agent    *agent.Agent
	Status   *agent.Client
	Self     agent.SelfStatus
	WGKey    wgdev.PrivateKey // read back from STATE/wireguard.key
	// Conn is the agent's watch on the hostile coordinator; Conn.Publish is
	// its real, CA-issued bundle and endpoints.
	Conn *hostile.Conn
	// Probe records what reaches the node's overlay address (victim only;
	// see startListener).
	Probe *probe
	// Clock is the agent's Config.Now: real time until a test moves it
	// forward to make what the agent holds expire (nothing sleeps).
	Clock *testclock.Clock
	logs  *logbuf.Buffer
	stop  func() // stops the agent and waits for Run to return
}

// V4 is the node's certified IPv4 overlay address.
func (n *node) V4() netip.Addr {
	for _, a := range n.Self.Addresses {
		if a.Is4() {
			return a
		}
	}
	panic("node has no IPv4 overlay address")
}

// Endpoint is the node's WireGuard endpoint on loopback.
func (n *node) Endpoint() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(n.Agent.Device().ListenPort()))
}

// AsPeer is the node as an honest coordinator would relay it.
func (n *node) AsPeer() wire.Peer {
	return wire.Peer{Label: string(n.Self.DeviceID), Bundle: n.Conn.Publish.Bundle, Endpoints: n.Conn.Publish.Endpoints,
		Advertisement: n.Conn.Publish.Advertisement}
}

// newFixture sets up the CA, the hostile coordinator, the victim (with a
// probe listener) and the legitimate peer, both connected.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	t.Parallel()
	return newSerialFixture(t)
}

// newSerialFixture is newFixture for a test that does not run in
// parallel with others (one that measures the process's heap).
func newSerialFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, nil, nil)
}

// newFixtureWith is newSerialFixture with the victim's and the peer's
// configurations edited.
func newFixtureWith(t *testing.T, victim, peer func(*agent.Config)) *fixture {
	t.Helper()
	f := initFixture(t)
	f.editConfig(t, func(*ca.Config) {})
	f.openCA(t)
	f.CAURL = serveCA(t, f.CA, f.CA.Handler(), nil)

	edits := func(e func(*agent.Config)) []func(*agent.Config) {
		if e == nil {
			return nil
		}
		return []func(*agent.Config){e}
	}
	f.Victim = f.startAgent(t, f.CAURL, "victim", edits(victim)...)
	f.Peer = f.startAgent(t, f.CAURL, "peer", edits(peer)...)
	startListener(t, f.Victim)
	return f
}

// initFixture creates the CA's state and the hostile coordinator, which
// presents the server certificate the CA's init made.
func initFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{StateDir: filepath.Join(shortTempDir(t), "ca"), nextHost: 100}
	if _, err := ca.Init(f.StateDir, ca.InitOptions{TrustDomain: trustDomain}); err != nil {
		t.Fatalf("ca.Init: %v", err)
	}
	tlsCert, err := tls.LoadX509KeyPair(filepath.Join(f.StateDir, ca.ServerCertFile), filepath.Join(f.StateDir, ca.ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	f.Coord = hostile.New(t, tlsCert)
	return f
}

// editConfig rewrites the CA's config before it opens: agents are pointed
// at the hostile coordinator, then edit changes whatever else a test needs.
func (f *fixture) editConfig(t *testing.T, edit func(*ca.Config)) {
	t.Helper()
	cfg, err := ca.LoadConfig(f.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CoordinatorURL = f.Coord.URL()
	edit(cfg)
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.StateDir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// openCA opens the CA, has the coordinator greet every agent with its
// starter policy and keeps a testca.PKI on the CA's own keys for forging.
func (f *fixture) openCA(t *testing.T) {
	t.Helper()
	var err error
	f.CA, err = ca.Open(f.StateDir, ca.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("ca.Open: %v", err)
	}
	t.Cleanup(func() { f.CA.Close() })
	// The CA's real starter policy (everyone may reach everyone), relayed
	// as an honest coordinator would: the attacks are on peers, and a node
	// without a policy would drop every packet anyway.
	f.Coord.SetGreeting(&wire.Event{Type: wire.EventDocument, Doc: &wire.Document{Kind: wire.DocPolicy, Data: f.CA.Policy()}})
	f.Overlays = f.CA.Config().Overlays()
	f.PKI = testca.FromKeyPairs(t, trustDomain, &certs.KeyPair{Cert: f.CA.Roots().Certificates()[0]},
		&certs.KeyPair{Cert: f.CA.Intermediate().Cert, Key: readKey(t, filepath.Join(f.StateDir, "intermediate.key"))},
		f.Overlays...)
}

// serveCA serves h over TLS as cmd/certmesh-server/run.go does (client
// certificates from the CA's root, if given), on ln or a new loopback
// listener, until the test ends, and returns its URL.
func serveCA(t *testing.T, c *ca.CA, h http.Handler, ln net.Listener) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.TLS = &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      c.Roots().Pool(),
		GetCertificate: c.GetCertificate,
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// shortTempDir is a temporary directory with a short path: the agent's
// unix socket lives in its state directory.
func shortTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "hostile")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func readKey(t *testing.T, path string) crypto.Signer {
	t.Helper()
	k, err := pemutil.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		t.Fatalf("%s holds no signing key", path)
	}
	return s
}

// startAgent enrolls a new agent with a fresh token, runs it until the
// test ends and waits for its watch on the hostile coordinator. edits, if
// any, change the agent's configuration first (a stale-CRL policy, ...).
func (f *fixture) startAgent(t *testing.T, caURL, name string, edits ...func(*agent.Config)) *node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	tok, _, err := f.CA.CreateToken(ctx, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{Name: name, StateDir: filepath.Join(filepath.Dir(f.StateDir), name), Clock: &testclock.Clock{}, logs: &logbuf.Buffer{}}
	u, _ := url.Parse(caURL)
	runCtx, stop := context.WithCancel(context.Background())
	cfg := agent.Config{
		StateDir: n.StateDir, ServerURL: u, RootFingerprint: certs.FingerprintOf(f.CA.Roots().Certificates()[0]),
		Token: tok, Hostname: certs.Hostname(name), Mode: wgdev.Userspace, Now: n.Clock.Now,
		AdvertiseAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		// The attacks here forge certificates with the CA's own key
		// (f.PKI), which the log never saw: with require_logged they would
		// all be refused as not-logged before the check under test.
		// tstest/hostile/log_test.go attacks the log checks.
		AllowUnlogged: true,
		// What the coordinator withholds stays withheld for the test:
		// the agent fetches from the CA at start only, unless a test of
		// the CA fetch sets a short interval (freshness_test.go).
		CAFetchInterval: time.Hour,
		// The coordinator's removals take effect at once, so that the
		// attacks that remove a peer and offer it again see it new; the
		// grace (agent/peers_remove.go) only delays a removal, which gives
		// a coordinator nothing it could not get by not sending it.
		UnlistedGrace: -1,
		Logger:        slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, edit := range edits {
		edit(&cfg)
	}
	n.Agent, err = agent.New(ctx, cfg)
	if err != nil {
		stop()
		t.Fatalf("agent.New(%s): %v", name, err)
	}
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		if err := n.Agent.Run(runCtx); err != nil {
			n.logs.Write([]byte("Run: " + err.Error() + "\n"))
		}
	}()
	n.stop = func() { stop(); <-ran }
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("--- %s agent log ---\n%s", name, n.logs.String())
		}
	})
	n.Status = agent.NewClient(n.StateDir)
	st := waitStatus(t, n, "agent to serve its status", func(*agent.Status) bool { return true })
	n.Self = st.Self
	if n.WGKey, err = wgdev.LoadPrivateKey(filepath.Join(n.StateDir, "wireguard.key")); err != nil {
		t.Fatal(err)
	}
	if n.Conn, err = f.Coord.WaitForAgent(ctx, n.Self.DeviceID); err != nil {
		t.Fatal(err)
	}
	return n
}

// awaitVictim waits for the victim's new watch on the coordinator (after
// the old stream was dropped) and makes it the victim's connection.
func (f *fixture) awaitVictim(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	cn, err := f.Coord.WaitForAgent(ctx, f.Victim.Self.DeviceID)
	if err != nil {
		t.Fatalf("the victim did not reconnect: %v", err)
	}
	f.Victim.Conn = cn
}

// reconnectVictim drops the victim's stream; the coordinator greets the
// reconnecting victim with greeting (then the snapshot).
func (f *fixture) reconnectVictim(t *testing.T, greeting ...*wire.Event) {
	t.Helper()
	f.Coord.SetGreeting(greeting...)
	f.Victim.Conn.Close()
	f.awaitVictim(t)
}

// freshAddrs returns IPv4 and IPv6 overlay addresses no agent holds.
func (f *fixture) freshAddrs() []netip.Addr {
	f.mu.Lock()
	n := f.nextHost
	f.nextHost++
	f.mu.Unlock()
	out := make([]netip.Addr, len(f.Overlays))
	for i, p := range f.Overlays {
		b := p.Masked().Addr().AsSlice()
		sum := new(big.Int).Add(new(big.Int).SetBytes(b), big.NewInt(int64(n))).Bytes()
		full := make([]byte, len(b))
		copy(full[len(full)-len(sum):], sum)
		out[i], _ = netip.AddrFromSlice(full)
	}
	return out
}

// profile is a machine profile in the CA's trust domain for the WireGuard
// key wg, with fresh addresses.
func (f *fixture) profile(t *testing.T, host string, wg certs.WireGuardKey) certs.MachineProfile {
	t.Helper()
	p := f.PKI.NewProfile(t, host)
	p.Addresses = f.freshAddrs()
	p.WireGuardKey = wg
	return p
}
