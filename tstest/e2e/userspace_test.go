package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/netns"
)

// TestUserspaceMesh runs a server and two agent processes in userspace
// (netstack) mode on loopback, plus a third agent inside the test process,
// and sends TCP through the process agents' SOCKS5 proxies to an echo
// server on the in-process agent's netstack. It needs no root.
func TestUserspaceMesh(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	logs := map[string]string{}
	t.Cleanup(func() { DumpLogsOnFailure(t, logs) })

	m, _, fp, listen := startLoopbackServer(ctx, t, bin, dir, logs)
	serverURL := "https://" + listen.String()

	// Two agent processes with SOCKS5 proxies on ports they pick.
	type procAgent struct {
		*Agent
		p *proc
	}
	var pas []procAgent
	for _, name := range []string{"u1", "u2"} {
		tok, err := m.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a := &Agent{Name: name, StateDir: filepath.Join(dir, name, "state")}
		logs["agent "+name] = filepath.Join(dir, name, "agent.log")
		p := startProc(t, logs["agent "+name], bin.Certmesh, "agent", "--state", a.StateDir, "--server", serverURL,
			"--root-fingerprint", fp, "--token", tok, "--hostname", name,
			"--userspace", "--socks5", "127.0.0.1:0", "--advertise", "127.0.0.1", "--debug")
		pas = append(pas, procAgent{a, p})
	}

	// A third agent in this process, so that the test can listen on its
	// netstack.
	tok, err := m.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	rootFP, err := certs.ParseFingerprint(fp)
	if err != nil {
		t.Fatal(err)
	}
	logs["agent u3 (in-process)"] = filepath.Join(dir, "u3", "agent.log")
	if err := os.MkdirAll(filepath.Join(dir, "u3"), 0o755); err != nil {
		t.Fatal(err)
	}
	lf, err := os.Create(logs["agent u3 (in-process)"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	a3 := &Agent{Name: "u3", StateDir: filepath.Join(dir, "u3", "state")}
	inproc, err := agent.New(ctx, agent.Config{
		StateDir: a3.StateDir, ServerURL: u, RootFingerprint: rootFP, Token: tok, Hostname: "u3",
		Mode: wgdev.Userspace, AdvertiseAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Logger: slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopAgent := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- inproc.Run(runCtx) }()
	t.Cleanup(func() {
		stopAgent()
		select {
		case err := <-runDone:
			if err != nil {
				t.Errorf("in-process agent: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("in-process agent did not stop")
		}
	})

	// Identities of all three.
	statusOf := func(a *Agent) (*agent.Status, error) {
		if a == a3 {
			return inproc.Status()
		}
		return a.Status(ctx)
	}
	all := []*Agent{pas[0].Agent, pas[1].Agent, a3}
	for _, a := range all {
		waitOK(ctx, t, "agent "+a.Name, func() error {
			for _, pa := range pas {
				if err := pa.p.exited(); err != nil {
					return err
				}
			}
			st, err := statusOf(a)
			if err != nil {
				return err
			}
			if st.Self.DeviceID == "" || len(st.Self.Addresses) != 2 {
				return fmt.Errorf("%s: no identity yet: %+v", a.Name, st.Self)
			}
			a.ID, a.Key, a.Addrs = st.Self.DeviceID, st.Self.WireGuardKey, st.Self.Addresses
			if a != a3 && st.Self.SOCKS5 == "" {
				return fmt.Errorf("%s: no SOCKS5 proxy yet", a.Name)
			}
			return nil
		})
	}

	// Every agent sees the two others verified, with a completed handshake.
	start := time.Now()
	waitOK(ctx, t, "userspace mesh", func() error {
		var errs []error
		for _, a := range all {
			st, err := statusOf(a)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if st.Self.Mode != "userspace" {
				errs = append(errs, fmt.Errorf("%s: mode %q", a.Name, st.Self.Mode))
			}
			errs = append(errs, CheckPeers(st, others(all, a), true))
		}
		return errors.Join(errs...)
	})
	t.Logf("userspace mesh converged with handshakes in %v", time.Since(start).Round(time.Millisecond))

	// The CLI shows the same.
	for _, pa := range pas {
		st, err := runStatusCLI(ctx, bin, pa.StateDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckPeers(st, others(all, pa.Agent), true); err != nil {
			t.Error(err)
		}
	}

	// Echo servers on u3's netstack, IPv4 and IPv6.
	const echoPort = 7000
	tnet := inproc.Device().Net()
	echo := &EchoServer{}
	t.Cleanup(echo.Close)
	for _, ip := range a3.Addrs {
		ln, err := tnet.ListenTCPAddrPort(netip.AddrPortFrom(ip, echoPort))
		if err != nil {
			t.Fatal(err)
		}
		echo.Serve(ln)
	}

	// Wait until every proxy reaches every echo server (the first contact
	// may be slow, see FirstContactTimeout); from then on the exchanges
	// below must just work.
	socks := map[string]string{}
	for _, pa := range pas {
		st, err := pa.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		socks[pa.Name] = st.Self.SOCKS5
		for _, ip := range a3.Addrs {
			dst := netip.AddrPortFrom(ip, echoPort)
			start := time.Now()
			wctx, cancel := context.WithTimeout(ctx, FirstContactTimeout)
			err := netns.WaitFor(wctx, pollInterval, func() error {
				actx, cancel := context.WithTimeout(wctx, 3*time.Second)
				defer cancel()
				c, err := socks5Connect(actx, st.Self.SOCKS5, dst)
				if err != nil {
					return err
				}
				return c.Close()
			})
			cancel()
			if err != nil {
				t.Fatalf("%s cannot reach %s through its SOCKS5 proxy: %v", pa.Name, dst, err)
			}
			logSlowFirstContact(t, start)
		}
	}

	for _, pa := range pas {
		for _, ip := range a3.Addrs {
			t.Run(fmt.Sprintf("echo-%s-%s", pa.Name, ip), func(t *testing.T) {
				c, err := socks5Connect(ctx, socks[pa.Name], netip.AddrPortFrom(ip, echoPort))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				msg := make([]byte, 256<<10)
				_, _ = rand.Read(msg)
				errc := make(chan error, 1)
				go func() {
					_, err := c.Write(msg)
					errc <- err
				}()
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil {
					t.Fatalf("reading the echo: %v", err)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatal("echo differs from what was sent")
				}
			})
		}
	}

	// Mesh names: the proxy resolves them itself, from the verified
	// peers; any other name is refused, never resolved on the host.
	t.Run("by-name", func(t *testing.T) {
		c, err := socks5ConnectHost(ctx, socks[pas[0].Name], "u3."+DefaultTrustDomain, echoPort)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if err := Exchange(c, "by name"); err != nil {
			t.Fatalf("echo through the proxy by mesh name: %v", err)
		}
		for _, name := range []string{"nobody." + DefaultTrustDomain, "example.com"} {
			var se socksError
			if c, err := socks5ConnectHost(ctx, socks[pas[0].Name], name, 80); !errors.As(err, &se) || se != socksHostUnreachable {
				if c != nil {
					c.Close()
				}
				t.Errorf("SOCKS5 CONNECT to %s: %v, want reply %d (host unreachable)", name, err, socksHostUnreachable)
			}
		}
	})

	// A port nobody listens on, on a mesh peer: the netstack's RST comes
	// back through the tunnel and the proxy reports "connection refused".
	t.Run("refused", func(t *testing.T) {
		st, err := pas[0].Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// u1 and u2 have not exchanged data yet: allow for a slow first
		// contact (see FirstContactTimeout).
		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, FirstContactTimeout)
		defer cancel()
		err = netns.WaitFor(wctx, pollInterval, func() error {
			actx, cancel := context.WithTimeout(wctx, 3*time.Second)
			defer cancel()
			c, err := socks5Connect(actx, st.Self.SOCKS5, netip.AddrPortFrom(pas[1].V4(), 9))
			if err == nil {
				c.Close()
				t.Fatalf("SOCKS5 CONNECT to a closed port of %s succeeded", pas[1].Name)
			}
			var se socksError
			switch {
			case errors.As(err, &se) && se == socksConnRefused:
				return nil
			case errors.As(err, &se):
				t.Fatalf("SOCKS5 CONNECT to a closed port of %s: %v, want reply %d (connection refused)", pas[1].Name, err, socksConnRefused)
			}
			return err
		})
		if err != nil {
			t.Fatalf("SOCKS5 CONNECT to a closed port of %s: %v, want reply %d (connection refused)", pas[1].Name, err, socksConnRefused)
		}
		logSlowFirstContact(t, start)
		t.Logf("connection refused after %v", time.Since(start).Round(time.Millisecond))
	})
}

func runStatusCLI(ctx context.Context, bin *Binaries, state string) (*agent.Status, error) {
	a := &Agent{StateDir: state}
	out, err := run(ctx, bin.Certmesh, "status", "--state", a.StateDir, "--json")
	if err != nil {
		return nil, err
	}
	st := new(agent.Status)
	if err := json.Unmarshal([]byte(out), st); err != nil {
		return nil, err
	}
	return st, nil
}

// waitOK polls fn for up to 30 seconds and fails the test if it never
// succeeds.
func waitOK(ctx context.Context, t *testing.T, what string, fn func() error) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := netns.WaitFor(wctx, pollInterval, fn); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// socksError is a SOCKS5 reply code other than success.
type socksError byte

const socksConnRefused socksError = 5

// socksHostUnreachable is the reply to a name the proxy does not resolve.
const socksHostUnreachable socksError = 4

func (e socksError) Error() string { return "SOCKS5 reply " + strconv.Itoa(int(e)) }

// socks5Connect opens a connection to dst through the SOCKS5 proxy at
// proxy (no authentication, CONNECT with an IP address).
func socks5Connect(ctx context.Context, proxy string, dst netip.AddrPort) (net.Conn, error) {
	return socks5ConnectHost(ctx, proxy, dst.Addr().String(), dst.Port())
}

// socks5ConnectHost is socks5Connect to host:port, host an IP address or
// a name for the proxy to resolve.
func socks5ConnectHost(ctx context.Context, proxy, host string, port uint16) (net.Conn, error) {
	dst := net.JoinHostPort(host, strconv.Itoa(int(port)))
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxy)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Conn, error) {
		c.Close()
		return nil, fmt.Errorf("SOCKS5 via %s to %s: %w", proxy, dst, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return fail(err)
	}
	var hello [2]byte
	if _, err := io.ReadFull(c, hello[:]); err != nil {
		return fail(err)
	}
	if hello != [2]byte{5, 0} {
		return fail(fmt.Errorf("proxy chose method %v", hello))
	}
	req := []byte{5, 1, 0}
	switch ip, err := netip.ParseAddr(host); {
	case err != nil:
		req = append(append(req, 3, byte(len(host))), host...)
	case ip.Is4():
		a := ip.As4()
		req = append(append(req, 1), a[:]...)
	default:
		a := ip.As16()
		req = append(append(req, 4), a[:]...)
	}
	req = binary.BigEndian.AppendUint16(req, port)
	if _, err := c.Write(req); err != nil {
		return fail(err)
	}
	var head [4]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return fail(err)
	}
	if head[0] != 5 {
		return fail(fmt.Errorf("bad reply version %d", head[0]))
	}
	if head[1] != 0 {
		return fail(socksError(head[1]))
	}
	n := 0
	switch head[3] {
	case 1:
		n = 4
	case 4:
		n = 16
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return fail(err)
		}
		n = int(l[0])
	default:
		return fail(fmt.Errorf("bad address type %d in reply", head[3]))
	}
	if _, err := io.ReadFull(c, make([]byte, n+2)); err != nil {
		return fail(err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// startLoopbackServer initialises a server in dir/srv/state, runs it on a
// free loopback port and waits until its admin socket answers; it returns
// the mesh handle (Server set), the server's process, the root fingerprint
// and the address.
func startLoopbackServer(ctx context.Context, t *testing.T, bin *Binaries, dir string, logs map[string]string, args ...string) (*Mesh, *proc, string, netip.AddrPort) {
	t.Helper()
	m, fp := initLoopbackServer(ctx, t, bin, dir)
	srv, listen := runLoopbackServer(ctx, t, m, dir, logs, args...)
	return m, srv, fp, listen
}

// initLoopbackServer runs `certmesh-server init` in dir/srv/state and
// returns the mesh (its Server without a process) and the root
// fingerprint: a test may patch the configuration before
// runLoopbackServer.
func initLoopbackServer(ctx context.Context, t *testing.T, bin *Binaries, dir string) (*Mesh, string) {
	t.Helper()
	srvState := filepath.Join(dir, "srv", "state")
	out, err := run(ctx, bin.Server, "init", "--state", srvState, "--trust-domain", DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	mt := fingerprintRE.FindStringSubmatch(out)
	if mt == nil {
		t.Fatalf("no fingerprint in %q", out)
	}
	return &Mesh{Bin: bin, Server: &Server{StateDir: srvState}}, mt[1]
}

// runLoopbackServer runs `certmesh-server run` (with args) on a free
// loopback port for the state initLoopbackServer made, and waits until
// its admin socket answers.
func runLoopbackServer(ctx context.Context, t *testing.T, m *Mesh, dir string, logs map[string]string, args ...string) (*proc, netip.AddrPort) {
	t.Helper()
	listen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
	logs["certmesh-server"] = filepath.Join(dir, "srv", "server.log")
	srv := startProc(t, logs["certmesh-server"], m.Bin.Server, append([]string{"run", "--state", m.Server.StateDir, "--listen", listen.String()}, args...)...)
	waitOK(ctx, t, "certmesh-server", func() error {
		if err := srv.exited(); err != nil {
			return err
		}
		_, err := m.Devices(ctx)
		return err
	})
	return srv, listen
}
