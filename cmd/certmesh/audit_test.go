package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/logbuf"
	"github.com/certmesh/certmesh/translog"
	"github.com/certmesh/certmesh/tstest/testca"
)

type auditFixture struct {
	ca       *testca.CA
	log      *translog.Log
	vkey     string
	tlsURL   string
	plainURL string
	rootFile string
	dir      string
	logged   certs.Bundle
}

func newAuditFixture(t *testing.T) *auditFixture {
	t.Helper()
	f := &auditFixture{ca: testca.New(t, "corp.example"), dir: t.TempDir()}
	skey, vkey, err := translog.GenerateKey(translog.Origin("corp.example"))
	if err != nil {
		t.Fatal(err)
	}
	s, _, _ := translog.NewSigner(skey)
	f.vkey = vkey
	f.log, err = translog.Open(filepath.Join(f.dir, "log.db"), s, translog.Origin("corp.example"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.log.Close() })
	f.logged, _ = f.ca.IssueMachine(t, f.ca.NewProfile(t, "laptop"))
	if _, err := f.log.Append(context.Background(), translog.CertificateEntry(f.logged.Machine.Raw, f.logged.Intermediates[0].Raw)); err != nil {
		t.Fatal(err)
	}
	h, err := f.log.Handler(vkey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	kp := f.ca.IssueServer(t)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{kp.Cert.Raw, f.ca.Intermediate().Cert.Raw}, PrivateKey: kp.Key}}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the wrong-root test's handshake failure
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.tlsURL = srv.URL
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	f.plainURL = plain.URL
	f.rootFile = filepath.Join(f.dir, "root.pem")
	if err := os.WriteFile(f.rootFile, certs.EncodePEM(f.ca.Root().Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// runAudit runs `certmesh audit ARGS...` and returns its output and exit
// code (1 for an error returned to main).
func runAudit(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	code := -1
	old := auditExit
	auditExit = func(c int) { code = c }
	defer func() { auditExit = old }()
	cmd := auditCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		errOut.WriteString(err.Error())
		return out.String(), errOut.String(), 1
	}
	if code == -1 {
		code = 0
	}
	return out.String(), errOut.String(), code
}

func TestAuditCLI(t *testing.T) {
	f := newAuditFixture(t)
	state := filepath.Join(f.dir, "state.json")
	common := []string{"--server", f.tlsURL, "--root", f.rootFile, "--state", state}

	out, errOut, code := runAudit(t, append([]string{"verify"}, common...)...)
	if code != 0 || !strings.Contains(out, "OK") || !strings.Contains(out, "1 certificates") {
		t.Fatalf("verify over TLS: code %d\n%s%s", code, out, errOut)
	}
	out, _, code = runAudit(t, append([]string{"verify", "--quiet"}, common...)...)
	if code != 0 || out != "" {
		t.Fatalf("verify --quiet: code %d, output %q", code, out)
	}

	// list --json, --since.
	out, _, code = runAudit(t, append([]string{"list", "--json", "--since", "1h"}, common...)...)
	var rec map[string]any
	if code != 0 || json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &rec) != nil || rec["hostname"] != "laptop" {
		t.Fatalf("list --json: code %d, %q", code, out)
	}
	out, _, code = runAudit(t, append([]string{"list", "--since", time.Now().Add(time.Hour).Format(time.RFC3339)}, common...)...)
	if code != 0 || out != "" {
		t.Fatalf("list --since future: code %d, %q", code, out)
	}
	if _, errOut, code = runAudit(t, append([]string{"list", "--since", "yesterday"}, common...)...); code != 1 || !strings.Contains(errOut, "--since") {
		t.Fatalf("bad --since: code %d, %s", code, errOut)
	}

	// check: the logged certificate passes, an unlogged one is an alarm.
	logged := filepath.Join(f.dir, "logged.pem")
	os.WriteFile(logged, certs.EncodePEM(f.logged.Machine, f.logged.Intermediates[0]), 0o644)
	if out, _, code = runAudit(t, append([]string{"check", logged}, common...)...); code != 0 {
		t.Fatalf("check logged: code %d\n%s", code, out)
	}
	ghost, _ := f.ca.IssueMachine(t, f.ca.NewProfile(t, "ghost"))
	ghostFile := filepath.Join(f.dir, "ghost.pem")
	os.WriteFile(ghostFile, certs.EncodePEM(ghost.Machine), 0o644)
	if out, _, code = runAudit(t, append([]string{"check", ghostFile}, common...)...); code != auditExitAlarm || !strings.Contains(out, "not-logged") {
		t.Fatalf("check unlogged: code %d\n%s", code, out)
	}

	// Plain HTTP log URL.
	plain := []string{"verify", "--server", f.plainURL, "--root", f.rootFile, "--state", state, "--json"}
	if out, _, code = runAudit(t, plain...); code != 0 || !strings.Contains(out, `"alarms": []`) {
		t.Fatalf("verify over plain HTTP: code %d\n%s", code, out)
	}

	// An alarm exits 1: the log served with another key.
	skey, vkey, _ := translog.GenerateKey(translog.Origin("corp.example"))
	s, _, _ := translog.NewSigner(skey)
	other, err := translog.Open(filepath.Join(f.dir, "other.db"), s, translog.Origin("corp.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	h, _ := other.Handler(vkey)
	srv := httptest.NewServer(h)
	defer srv.Close()
	out, _, code = runAudit(t, "verify", "--server", srv.URL, "--root", f.rootFile, "--state", state)
	if code != auditExitAlarm || !strings.Contains(out, "key-changed") {
		t.Fatalf("re-keyed log: code %d\n%s", code, out)
	}

	// Errors exit 1: a server whose TLS certificate is not the root's, a
	// missing --state, a bad --log-key.
	otherCA := testca.New(t, "corp.example")
	wrongRoot := filepath.Join(f.dir, "wrong-root.pem")
	os.WriteFile(wrongRoot, certs.EncodePEM(otherCA.Root().Cert), 0o644)
	if _, errOut, code = runAudit(t, "verify", "--server", f.tlsURL, "--root", wrongRoot, "--state", filepath.Join(f.dir, "s2.json")); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Fatalf("TLS with the wrong root: code %d, %s", code, errOut)
	}
	if _, errOut, code = runAudit(t, "verify", "--server", f.tlsURL, "--root", f.rootFile); code != 1 || !strings.Contains(errOut, "--state") {
		t.Fatalf("no --state: code %d, %s", code, errOut)
	}
	if _, errOut, code = runAudit(t, "verify", "--server", f.tlsURL, "--root", f.rootFile, "--state", state, "--log-key", "nonsense"); code != 1 || !strings.Contains(errOut, "--log-key") {
		t.Fatalf("bad --log-key: code %d, %s", code, errOut)
	}
	keyFile := filepath.Join(f.dir, "log.key")
	os.WriteFile(keyFile, []byte(f.vkey+"\n"), 0o644)
	if _, errOut, code = runAudit(t, "verify", "--server", f.tlsURL, "--root", f.rootFile, "--state", filepath.Join(f.dir, "s3.json"), "--log-key", "@"+keyFile); code != 0 {
		t.Fatalf("--log-key @FILE: code %d, %s", code, errOut)
	}
}

func TestAuditWatchCLI(t *testing.T) {
	f := newAuditFixture(t)
	state := filepath.Join(f.dir, "state.json")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut logbuf.Buffer
	fl := &auditFlags{server: f.plainURL, rootFile: f.rootFile, stateFile: state, timeout: time.Second}
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := runAuditWatch(ctx, &out, &errOut, fl, 10*time.Millisecond)
		done <- result{code, err}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("watch: no %s\n%s%s", what, out.String(), errOut.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("first verification", func() bool { _, err := os.Stat(state); return err == nil })
	if _, err := f.log.Append(context.Background(), translog.PolicyEntry(1, []byte("p"), time.Now())); err != nil {
		t.Fatal(err)
	}
	waitFor("new entry printed", func() bool { return strings.Contains(out.String(), "policy version 1") })
	cancel()
	if r := <-done; r.err != nil || r.code != 0 {
		t.Fatalf("watch ended with code %d, %v\n%s%s", r.code, r.err, out.String(), errOut.String())
	}
}
