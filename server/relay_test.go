package server_test

import (
	"net"
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
