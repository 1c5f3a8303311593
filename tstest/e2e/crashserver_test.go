package e2e

// The server side of the crash tests (crash_test.go): certmesh-server on
// loopback, killed, restarted, and checked once it is back: database, log
// and CRL compared, tokens, `devices revoke`, `certmesh audit verify`.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certmesh/certmesh/audit"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/translog"
	"github.com/certmesh/certmesh/tstest/crashcheck"
)

// crashServer is certmesh-server on loopback in the test's namespace.
type crashServer struct {
	*Mesh // for the admin CLI helpers
	state string
	addr  string
	p     *proc
	runs  int
	roots *certs.Roots
	ca    *caClient
}

func newCrashServer(t *testing.T, state string) *crashServer {
	t.Helper()
	bin := binaries(t)
	m := New(nil, Options{Bin: bin, Dir: t.TempDir()})
	if _, err := run(t.Context(), bin.Server, "init", "--state", state, "--trust-domain", DefaultTrustDomain); err != nil {
		t.Fatal(err)
	}
	m.Server = &Server{StateDir: state}
	// A burst from one address must not be rate limited.
	if err := m.PatchServerConfig(map[string]any{"rate_limit": map[string]any{"per_second": 10000, "burst": 10000}}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	roots, err := ca.LoadRoots(state, DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	m.URL = "https://" + addr
	s := &crashServer{Mesh: m, state: state, addr: addr, roots: roots, ca: newCAClient(m.URL, roots)}
	s.start(t)
	return s
}

// start runs the server and waits until its admin socket answers.
func (s *crashServer) start(t *testing.T) {
	t.Helper()
	s.runs++
	s.p = startProc(t, filepath.Join(s.Dir, fmt.Sprintf("server-%d.log", s.runs)), s.Bin.Server, "run", "--state", s.state, "--listen", s.addr)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.Devices(t.Context())
		if err == nil {
			return
		}
		if perr := s.p.exited(); perr != nil || time.Now().After(deadline) {
			t.Fatalf("certmesh-server did not come up: %v %v", err, perr)
		}
		time.Sleep(pollInterval)
	}
}

// kill9 kills the server with SIGKILL: nothing of it runs after.
func (s *crashServer) kill9(t *testing.T) {
	t.Helper()
	_ = syscall.Kill(-s.p.cmd.Process.Pid, syscall.SIGKILL)
	<-s.p.done
}

func (s *crashServer) tokens(t *testing.T, round, n int) []*burstDevice {
	t.Helper()
	var out []*burstDevice
	for i := range n {
		tok, err := s.Token(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		d, err := newBurstDevice(fmt.Sprintf("host-%d-%d", round, i), tok)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// auditVerify runs `certmesh audit verify` against the server, with one
// auditor state file for the test (each run also checks that the log
// extends what the previous one saw).
func (s *crashServer) auditVerify(t *testing.T, when string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), s.Bin.Certmesh, "audit", "verify", "--server", s.URL,
		"--root", filepath.Join(s.state, ca.RootCertFile), "--state", filepath.Join(s.Dir, "audit-state.json")).CombinedOutput()
	if err != nil {
		t.Errorf("%s: certmesh audit verify: %v\n%s", when, err, out)
	}
}

// checkAfterCrash checks the restarted server against the devices the
// test tried to enroll, then revokes every device and checks again.
func (s *crashServer) checkAfterCrash(t *testing.T, devs []*burstDevice) {
	t.Helper()
	ctx := t.Context()
	listed, err := s.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[certs.WireGuardKey]Device{}
	for _, d := range listed {
		byKey[d.WireGuardKey] = d
	}
	retried, spent := 0, 0
	for _, d := range devs {
		_, inDB := byKey[d.WGPub]
		switch {
		case d.Enrolled && !inDB:
			t.Errorf("%s was answered with a certificate but is not in the CA database", d.Name)
		case !d.Enrolled && inDB:
			// Committed, answer lost: its token is spent, and enrolling
			// again with it and the same keys answers with that device.
			spent++
			resp, err := s.ca.enroll(ctx, d)
			if err != nil || resp.DeviceID != byKey[d.WGPub].ID {
				t.Errorf("%s committed before the crash as %s; enrolling again with its token and keys: %v %s", d.Name, byKey[d.WGPub].ID, err, resp.DeviceID)
			}
		case !d.Enrolled:
			// Not committed: its token is still good.
			retried++
			if _, err := s.ca.enroll(ctx, d); err != nil {
				t.Errorf("%s did not commit before the crash, but its token no longer enrolls: %v", d.Name, err)
			}
		}
	}
	t.Logf("%d devices, %d answered; of the others %d had committed (enrolled again: the same device), %d had not (enrolled with their unspent token)",
		len(devs), countEnrolled(devs), spent, retried)
	s.auditVerify(t, "after the restart")
	if listed, err = s.Devices(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range listed {
		if d.State != "active" {
			continue
		}
		if _, err := s.ServerCLI(ctx, "devices", "revoke", "--state", s.state, string(d.ID)); err != nil {
			t.Errorf("devices revoke %s: %v", d.ID, err)
		}
	}
	s.auditVerify(t, "after revoking every device")
	s.compare(t)
}

func countEnrolled(devs []*burstDevice) int {
	n := 0
	for _, d := range devs {
		if d.Enrolled {
			n++
		}
	}
	return n
}

// compare reads the log and the CRL from the server, stops it, reads its
// database and reports every disagreement.
func (s *crashServer) compare(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	st := crashcheck.State{Now: time.Now()}
	vkey, err := os.ReadFile(filepath.Join(s.state, ca.LogPubFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := translog.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	lc, err := translog.NewClient(s.URL, audit.HTTPClient(s.roots, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st.Log, err = crashcheck.ReadLog(ctx, lc, v); err != nil {
		t.Fatal(err)
	}
	der, err := s.ca.get(ctx, wire.PathCRL)
	if err != nil {
		t.Fatal(err)
	}
	if st.CRL, err = x509.ParseRevocationList(der); err != nil {
		t.Fatal(err)
	}
	s.p.stop()
	db, err := store.OpenBolt(filepath.Join(s.state, "certmesh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(ctx, func(tx store.Tx) (err error) {
		if st.Certs, err = tx.ListCertificates(); err != nil {
			return err
		}
		if st.Devices, err = tx.ListDevices(); err != nil {
			return err
		}
		st.Intents, err = tx.ListIntents()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Problems() {
		t.Error(p)
	}
	t.Logf("log: %d entries; database: %d certificates, %d devices; CRL: %d entries", len(st.Log), len(st.Certs), len(st.Devices), len(st.CRL.RevokedCertificateEntries))
}

// burst enrolls devs with workers at once; after kill successes (0:
// never) it calls onKill once. It returns when every worker stopped.
func (s *crashServer) burst(ctx context.Context, devs []*burstDevice, workers, kill int, onKill func()) {
	var mu sync.Mutex
	next, ok := 0, 0
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				if next == len(devs) {
					mu.Unlock()
					return
				}
				d := devs[next]
				next++
				mu.Unlock()
				_, err := s.ca.enroll(ctx, d)
				mu.Lock()
				d.Enrolled = err == nil
				if err == nil {
					ok++
				}
				fire := kill > 0 && ok >= kill
				mu.Unlock()
				if fire {
					once.Do(onKill)
				}
				var ne net.Error
				if err != nil && (errors.As(err, &ne) || strings.Contains(err.Error(), "connection")) {
					return // the server is gone
				}
			}
		})
	}
	wg.Wait()
}
