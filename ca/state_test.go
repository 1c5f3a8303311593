package ca_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testclock"
)

func TestInitRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Init into a non-empty directory: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("refused Init wrote files: %v", entries)
	}

	// Nor over an existing CA.
	state := filepath.Join(t.TempDir(), "state")
	fp, err := ca.Init(state, ca.InitOptions{TrustDomain: testTrustDomain})
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := os.ReadFile(filepath.Join(state, ca.RootCertFile))
	if _, err := ca.Init(state, ca.InitOptions{TrustDomain: testTrustDomain}); err == nil {
		t.Fatal("Init overwrote an existing CA")
	}
	if again, _ := os.ReadFile(filepath.Join(state, ca.RootCertFile)); string(again) != string(rootPEM) {
		t.Fatal("refused Init changed the root certificate")
	}
	rs, err := certs.ParsePEM(rootPEM)
	if err != nil || !fp.Matches(rs[0]) {
		t.Fatalf("Init returned fingerprint %s, not the root's (%v)", fp, err)
	}
}

func TestInitRefusesBadTrustDomain(t *testing.T) {
	if _, err := ca.Init(filepath.Join(t.TempDir(), "s"), ca.InitOptions{TrustDomain: "Not A Domain"}); err == nil {
		t.Fatal("Init accepted an invalid trust domain")
	}
}

func TestStateFileModes(t *testing.T) {
	e := openTestCA(t)
	st, err := os.Stat(e.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %o, want 700", st.Mode().Perm())
	}
	files := []string{"root.key", "intermediate.key", ca.ServerKeyFile, "config.json", "certmesh.db"}
	if onPostgres() {
		files = files[:len(files)-1] // the records are in PostgreSQL
	}
	for _, name := range files {
		st, err := os.Stat(filepath.Join(e.Dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %o, want 600", name, st.Mode().Perm())
		}
	}
}

func TestOpenRefusesReadableIntermediateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain}); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "intermediate.key")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ca.Open(dir, ca.Options{Logger: discardLogger()})
	if err == nil {
		c.Close()
		t.Fatal("Open accepted an intermediate.key readable by others")
	}
	for _, want := range []string{"intermediate.key", "644", "chmod 600"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open error %q does not say %q", err, want)
		}
	}
	// Fixing the mode is enough.
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = ca.Open(dir, ca.Options{Logger: discardLogger()})
	if err != nil {
		t.Fatalf("Open after chmod 600: %v", err)
	}
	c.Close()
}

// A closed CA reopens with its devices and its address counter.
func TestReopenKeepsState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain}); err != nil {
		t.Fatal(err)
	}
	e := &testEnv{Dir: dir, Clock: &testclock.Clock{}, nextIndex: 1}
	open := func() {
		c, err := ca.Open(dir, ca.Options{Logger: discardLogger(), Now: e.Clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		e.CA = c
	}
	open()
	enroll := func(host string) {
		ctx := t.Context()
		n, err := e.CA.NewNonce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tok := e.Token(t)
		d := newTestDevice(t, host)
		resp, err := e.CA.Enroll(ctx, d.EnrollRequest(t, tok, n.Nonce))
		if err != nil {
			t.Fatal(err)
		}
		id := d.Accept(t, e, resp)
		if want := e.ExpectedAddresses(e.nextIndex); id.Addresses[0] != want[0] {
			t.Fatalf("address %v, want %v", id.Addresses, want)
		}
		e.nextIndex++
	}
	enroll("a")
	if err := e.CA.Close(); err != nil {
		t.Fatal(err)
	}
	open()
	defer e.CA.Close()
	enroll("b")
	if n := len(e.Devices(t)); n != 2 {
		t.Fatalf("%d devices after reopen, want 2", n)
	}
}

func TestInitConstrainsEmailDomains(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain, EmailDomains: []string{"corp.example"}}); err != nil {
		t.Fatal(err)
	}
	c, err := ca.Open(dir, ca.Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Intermediate().Cert.PermittedEmailAddresses; len(got) != 1 || got[0] != "corp.example" {
		t.Fatalf("intermediate permits emails %v, want [corp.example]", got)
	}
}
