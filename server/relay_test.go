package server_test

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/relaycred"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/server"
	"github.com/certmesh/certmesh/tstest/turntest"
)

// TestStandaloneRelay: --role relay runs a relay from a state directory
// without CA keys and its own derived key: TURN over UDP and over TLS on
// its listen port (the server certificate, checked as agents check it),
// for credentials under its key only.
func TestStandaloneRelay(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	if _, err := ca.Init(caDir, ca.InitOptions{TrustDomain: td}); err != nil {
		t.Fatal(err)
	}
	dir := coordStateDir(t, caDir)
	keyFile := filepath.Join(t.TempDir(), "eu-1.key")
	if err := ca.WriteRelayKey(caDir, "eu-1", keyFile); err != nil {
		t.Fatal(err)
	}
	udp := server.RelayOptions{UDP: "127.0.0.1:0", UDPAlt: "127.0.0.1:0"}
	for name, o := range map[string]server.Options{
		"no relay key":           {StateDir: dir, Role: server.RoleRelay, Relay: udp},
		"the CA's own directory": {StateDir: caDir, Role: server.RoleRelay, Relay: server.RelayOptions{KeyFile: keyFile, UDP: udp.UDP, UDPAlt: udp.UDPAlt}},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		o.Listener = ln
		if s, err := server.Start(o); err == nil {
			_ = s.Close()
			t.Fatalf("%s: a standalone relay started", name)
		} else if !strings.Contains(err.Error(), map[bool]string{true: "--relay-key", false: "no signing key"}[o.Relay.KeyFile == ""]) {
			t.Fatalf("%s: %v", name, err)
		}
		_ = ln.Close()
	}
	udp.KeyFile = keyFile
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.Start(server.Options{StateDir: dir, Role: server.RoleRelay, Relay: udp, Listener: ln, ShutdownTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if s.CA != nil || s.Coord != nil || s.Relay == nil {
		t.Fatalf("--role relay runs CA %v, coordinator %v, relay %v", s.CA != nil, s.Coord != nil, s.Relay != nil)
	}
	roots, err := ca.LoadRoots(dir, td)
	if err != nil {
		t.Fatal(err)
	}
	key, err := relaycred.ReadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cred := func(dev string, k relaycred.Key) (string, string) {
		u := relaycred.Username{Device: certs.DeviceID(dev), Expires: time.Now().Add(time.Minute).Truncate(time.Second)}.String()
		return u, k.Password(u)
	}
	udpAddr := s.Relay.UDPAddrs()[0].String()
	ua, pa := cred("aaaaaaaaaaaaaaaa", key)
	a := turntest.MustAllocate(t, s.Addr.String(), tlsclient.Config(roots, nil, nil), ua, pa)
	ub, pb := cred("bbbbbbbbbbbbbbbb", key)
	b := turntest.MustAllocate(t, udpAddr, nil, ub, pb)
	turntest.Exchange(t, a, b)

	// A credential for another relay (here the embedded one's key) is
	// refused: one relay's key admits nobody to another.
	master, err := relaycred.ReadKeyFile(filepath.Join(caDir, ca.RelayKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	uc, pc := cred("cccccccccccccccc", relaycred.DeriveKey(master, ca.EmbeddedRelayName))
	if err := turntest.Dial(t, udpAddr, nil, uc, pc).Allocate(); err == nil {
		t.Fatal("the standalone relay admitted a credential minted for another relay")
	}
	if n := s.Relay.Allocations(); n != 2 {
		t.Fatalf("%d allocations, want 2", n)
	}

	// A TURN connection over TLS stays active as long as its allocation:
	// a graceful shutdown must end it rather than wait it out.
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for the open TURN-over-TLS connection (shutdown timeout 1m)")
	}
}

// initWithRelay initialises a CA state directory with relay settings r.
func initWithRelay(t *testing.T, r *ca.RelayConfig) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: td}); err != nil {
		t.Fatal(err)
	}
	cfg, err := ca.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Relay = r
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestEmbeddedRelayPorts: by default the relay takes 3478 and 3479, or
// free ports when those are taken (agents learn them from the CA); ports
// an operator configured and cannot have fail the start, naming the
// setting; relay.disabled runs none.
func TestEmbeddedRelayPorts(t *testing.T) {
	// Whoever holds 127.0.0.1:3478 (this test, or another one), it is taken.
	if pc, err := net.ListenPacket("udp", "127.0.0.1:3478"); err == nil {
		defer pc.Close()
	}
	s := start(t, server.Options{StateDir: initWithRelay(t, nil)})
	if s.Relay == nil {
		t.Fatal("no embedded relay by default")
	}
	for _, a := range s.Relay.UDPAddrs() {
		if a.Port() == ca.DefaultRelayUDPPort {
			t.Fatalf("relay on %v: port 3478 was taken", s.Relay.UDPAddrs())
		}
	}
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = server.Start(server.Options{StateDir: initWithRelay(t, &ca.RelayConfig{UDPListen: taken.LocalAddr().String()}), Listener: ln})
	if err == nil || !strings.Contains(err.Error(), "relay.") {
		t.Fatalf("a configured relay port that is taken: %v", err)
	}
	if s := start(t, server.Options{StateDir: initWithRelay(t, &ca.RelayConfig{Disabled: true})}); s.Relay != nil {
		t.Fatal("relay.disabled, yet a relay runs")
	}
}
