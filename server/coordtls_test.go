package server_test

import (
	"crypto/ecdsa"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/server"
)

const td = certs.TrustDomain("split.test")

// coordStateDir makes what an operator copies to a coordinator host: the
// config, the root certificate and the server TLS pair. No CA key.
func coordStateDir(t *testing.T, caDir string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "coord")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{"config.json", 0o644}, {ca.RootCertFile, 0o644}, {ca.ServerCertFile, 0o644}, {ca.ServerKeyFile, 0o600}} {
		data, err := os.ReadFile(filepath.Join(caDir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func start(t *testing.T, o server.Options) *server.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Listener, o.Logger = ln, slog.New(slog.DiscardHandler)
	s, err := server.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// served is the certificate a server presents, judged by the clock.
func served(t *testing.T, s *server.Server, roots *certs.Roots, now func() time.Time) *tls.ConnectionState {
	t.Helper()
	c, err := tls.Dial("tcp", s.Addr.String(), &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots.Pool(),
		ServerName: certs.ServerName(td), Time: now})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := c.ConnectionState()
	return &st
}

// TestCoordinatorRenewsTLSCertificate: a coordinator-only server, which
// holds no CA key, renews its 30-day TLS certificate at the CA two thirds
// into its life, serves the new one at once and after a restart.
func TestCoordinatorRenewsTLSCertificate(t *testing.T) {
	clk := &testclock.Clock{}
	caDir := filepath.Join(t.TempDir(), "ca")
	if _, err := ca.Init(caDir, ca.InitOptions{TrustDomain: td}); err != nil {
		t.Fatal(err)
	}
	coordDir := coordStateDir(t, caDir)
	roots, err := ca.LoadRoots(caDir, td)
	if err != nil {
		t.Fatal(err)
	}
	caSrv := start(t, server.Options{StateDir: caDir, Role: server.RoleCA, Now: clk.Now})
	opts := server.Options{StateDir: coordDir, Role: server.RoleCoord, Now: clk.Now,
		CAURL: "https://" + caSrv.Addr.String(), ServerCertCheck: 20 * time.Millisecond}
	coordSrv := start(t, opts)
	first := served(t, coordSrv, roots, clk.Now).PeerCertificates[0]

	clk.Advance(19 * 24 * time.Hour)   // not yet due (20 days)
	time.Sleep(100 * time.Millisecond) // five checks: none renews
	if got := served(t, coordSrv, roots, clk.Now).PeerCertificates[0]; !got.Equal(first) {
		t.Fatalf("renewed at day 19, before two thirds of its life")
	}

	clk.Advance(2 * 24 * time.Hour) // day 21 of 30
	var renewed *tls.ConnectionState
	deadline := time.Now().Add(30 * time.Second)
	for {
		renewed = served(t, coordSrv, roots, clk.Now)
		if !renewed.PeerCertificates[0].Equal(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the coordinator's TLS certificate was not renewed at day 21 of 30")
		}
		time.Sleep(20 * time.Millisecond)
	}
	leaf := renewed.PeerCertificates[0]
	if err := ca.VerifyServerCertificate(renewed.PeerCertificates, roots, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if !leaf.NotAfter.After(clk.Now().Add(29 * 24 * time.Hour)) {
		t.Fatalf("renewed certificate ends %s", leaf.NotAfter)
	}
	if leaf.PublicKey.(*ecdsa.PublicKey).Equal(first.PublicKey) {
		t.Fatal("the renewed certificate keeps the old key")
	}
	for _, f := range []string{"intermediate.key", "root.key"} {
		if _, err := os.Stat(filepath.Join(coordDir, f)); !os.IsNotExist(err) {
			t.Fatalf("the coordinator's state holds %s: %v", f, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(coordDir, ca.ServerKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("server key: %v %v", fi.Mode(), err)
	}

	// Past the old certificate's end, a restarted coordinator serves the
	// renewed one from its state directory.
	if err := coordSrv.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * 24 * time.Hour) // day 31
	opts.ServerCertCheck = time.Hour
	again := start(t, opts)
	if got := served(t, again, roots, clk.Now).PeerCertificates[0]; !got.Equal(leaf) {
		t.Fatal("after a restart the coordinator does not serve its renewed certificate")
	}
}

// TestCoordinatorRefusesCAKeys: a coordinator-only server does not start
// from a state directory that holds a CA signing key, and serves nothing.
func TestCoordinatorRefusesCAKeys(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	if _, err := ca.Init(caDir, ca.InitOptions{TrustDomain: td}); err != nil {
		t.Fatal(err)
	}
	coordDir := coordStateDir(t, caDir)
	for _, key := range []string{"root.key", "intermediate.key", "log.key", "policy-signer.key"} {
		t.Run(key, func(t *testing.T) {
			dir := coordStateDir(t, coordDir)
			data, err := os.ReadFile(filepath.Join(caDir, key))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, key), data, 0o600); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			s, err := server.Start(server.Options{StateDir: dir, Role: server.RoleCoord, Listener: ln, Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				s.Close()
				t.Fatalf("a coordinator started from a state directory holding %s", key)
			}
			if !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "no signing key") {
				t.Fatalf("error does not say what is wrong: %v", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}
