package ca_test

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/certmesh/certmesh/audit"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/logbuf"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/translog"
	"github.com/certmesh/certmesh/tstest/crashcheck"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

// crashEnv is a CA served over HTTPS that a test can reopen from its state
// directory, as a restarted server would, behind the same URL.
type crashEnv struct {
	*loginEnv // IdP is nil without OIDC
	cur       atomic.Pointer[servedCA]
}

type servedCA struct {
	ca *ca.CA
	h  http.Handler
}

func newCrashEnv(t *testing.T, oidc, approval bool) *crashEnv {
	t.Helper()
	var dir string
	var idp *oidctest.Provider
	var ln net.Listener
	if oidc {
		dir, idp, ln = newOIDCState(t, nil)
	} else {
		dir = filepath.Join(t.TempDir(), "state")
		if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain}); err != nil {
			t.Fatal(err)
		}
	}
	if approval {
		editConfig(t, dir, func(c *ca.Config) { c.Approval = ca.ApprovalRequired })
	}
	e := &crashEnv{loginEnv: &loginEnv{testEnv: &testEnv{Dir: dir, Clock: &testclock.Clock{}, nextIndex: 1}, IdP: idp, Logs: &logbuf.Buffer{}}}
	e.open(t)
	t.Cleanup(func() { e.CA.Close() })
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.cur.Load().h.ServeHTTP(w, r) })
	getCert := func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) { return e.cur.Load().ca.GetCertificate(hi) }
	e.Srv = startTLS(t, h, ln, e.CA.Roots().Pool(), getCert)
	return e
}

func (e *crashEnv) open(t *testing.T) {
	t.Helper()
	c, err := ca.Open(e.Dir, ca.Options{Logger: slog.New(slog.NewTextHandler(e.Logs, nil)), Now: e.Clock.Now})
	if err != nil {
		t.Fatalf("reopening the CA: %v", err)
	}
	e.CA = c
	e.cur.Store(&servedCA{ca: c, h: c.Handler()})
}

// reopen closes the CA (after a crash: nothing more is written) and opens
// it again from its state directory.
func (e *crashEnv) reopen(t *testing.T) {
	t.Helper()
	if err := e.CA.Close(); err != nil {
		t.Fatalf("closing the CA: %v", err)
	}
	e.open(t)
}

// consistent fails the test unless database, log and CRL agree.
func (e *crashEnv) consistent(t *testing.T, when string) {
	t.Helper()
	st := crashcheck.State{Now: e.Clock.Now()}
	var err error
	if st.Log, err = ca.LogEntries(e.CA); err != nil {
		t.Fatal(err)
	}
	err = e.CA.Store().View(t.Context(), func(tx store.Tx) (err error) {
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
	if st.CRL, err = x509.ParseRevocationList(e.CA.CRL()); err != nil {
		t.Fatalf("CRL: %v", err)
	}
	for _, p := range st.Problems() {
		t.Errorf("%s: %s", when, p)
	}
}

// audited runs the auditor (certmesh audit verify) against the CA's log.
func (e *crashEnv) audited(t *testing.T, when string) {
	t.Helper()
	lh, err := e.CA.LogHandler()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(lh)
	defer srv.Close()
	cl, err := translog.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	a, err := audit.New(audit.Config{Client: cl, Roots: e.CA.Roots(), LogKey: e.CA.LogKey(), Now: e.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := a.Verify(t.Context())
	if err != nil {
		t.Fatalf("%s: audit verify: %v", when, err)
	}
	for _, al := range rep.Alarms {
		t.Errorf("%s: audit verify alarm: %+v", when, al)
	}
}

// revokeAll revokes every active device, as `devices revoke` does: each
// certificate the log shows must be revocable.
func (e *crashEnv) revokeAll(t *testing.T) {
	t.Helper()
	for _, d := range e.Devices(t) {
		if d.State != store.DeviceActive {
			continue
		}
		if _, err := e.CA.Revoke(t.Context(), d.ID); err != nil {
			t.Errorf("revoking device %s: %v", d.ID, err)
		}
	}
}
