package ca_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/internal/wire"
)

// restoreAndOpen restores the backup in src into a new state directory
// and opens (and serves) the CA there.
func restoreAndOpen(t *testing.T, src string) *testEnv {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	if _, _, err := ca.Restore(src, dir, ca.RestoreOptions{}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	afterRestore(t, dir)
	return restoreOpen(t, dir)
}

// restoreOpen opens (and serves) the CA in the restored state directory dir.
func restoreOpen(t *testing.T, dir string) *testEnv {
	t.Helper()
	clk := &testclock.Clock{}
	c, err := ca.Open(dir, ca.Options{Logger: discardLogger(), Now: clk.Now})
	if err != nil {
		t.Fatalf("Open of the restored state: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return serve(t, &testEnv{Dir: dir, CA: c, Clock: clk})
}

func TestBackupRestoreCatchingUp(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	e.Enroll(t, newTestDevice(t, "before"), e.Token(t))
	spare := e.Token(t)
	dest := filepath.Join(t.TempDir(), "backup")
	m, err := e.CA.Backup(ctx, dest)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if !m.Hot || m.LogSize == 0 {
		t.Fatalf("manifest %+v", m)
	}
	for name, f := range m.Files {
		if strings.HasSuffix(name, ".key") && f.Mode.Perm() != 0o600 {
			t.Errorf("%s backed up with mode %o", name, f.Mode.Perm())
		}
		if st, err := os.Stat(filepath.Join(dest, name)); err != nil || st.Mode().Perm()&0o077 != 0 && strings.HasSuffix(name, ".key") {
			t.Errorf("%s in the backup: %v, %v", name, st.Mode(), err)
		}
	}
	for _, gone := range []string{ca.AdminSocketFile, "server.lock"} {
		if _, ok := m.Files[gone]; ok {
			t.Errorf("backup holds %s", gone)
		}
	}
	// More issuance after the backup: the restored CA lacks it.
	e.Enroll(t, newTestDevice(t, "after"), e.Token(t))

	r := restoreAndOpen(t, dest)
	if r.CA.Restored() == nil {
		t.Fatal("restored CA is not marked restored")
	}
	if r.CA.Checkpoint() != nil || r.CA.CRL() != nil {
		t.Fatal("restored CA publishes a checkpoint or a CRL before it caught up")
	}
	d := newTestDevice(t, "new")
	st, body := r.Post(t, r.Client(t), wire.PathEnroll, d.EnrollRequest(t, spare, r.Nonce(t)))
	wantRefusal(t, st, body, http.StatusServiceUnavailable, ca.CodeCatchingUp, "restored: catching up")
	if _, err := r.CA.PublishPolicy(ctx, []byte(`{}`)); ca.CodeOf(err) != ca.CodeCatchingUp {
		t.Fatalf("PublishPolicy on a restored CA: %v", err)
	}
	lh, err := r.CA.LogHandler()
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	lh.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/log/checkpoint", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("restored CA's /v1/log/checkpoint answered %d", rec.Code)
	}
}

func TestRestoreRefusesDamagedBackup(t *testing.T) {
	e := openTestCA(t)
	dest := filepath.Join(t.TempDir(), "backup")
	if _, err := e.CA.Backup(context.Background(), dest); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		harm  func(dir string) error
		wants string
	}{
		{"truncated database", func(dir string) error { return os.Truncate(filepath.Join(dir, "certmesh.db"), 4096) }, "truncated"},
		{"damaged key", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "intermediate.key"), []byte("not the key"), 0o600)
		}, "intermediate.key"},
		{"missing log", func(dir string) error { return os.Remove(filepath.Join(dir, "translog.db")) }, "translog.db"},
		{"no manifest", func(dir string) error { return os.Remove(filepath.Join(dir, ca.BackupManifestFile)) }, "not a certmesh-server backup"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "copy")
			copyDir(t, dest, src)
			if err := tc.harm(src); err != nil {
				t.Fatal(err)
			}
			state := filepath.Join(t.TempDir(), "state")
			_, _, err := ca.Restore(src, state, ca.RestoreOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.wants) {
				t.Fatalf("Restore of a backup with a %s: %v, want an error naming %q", tc.name, err, tc.wants)
			}
			if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refused restore left %s behind (%v)", state, err)
			}
			left, _ := os.ReadDir(filepath.Dir(state))
			if len(left) != 0 {
				t.Fatalf("a refused restore left %v", left)
			}
		})
	}
}

func TestRestoreRefusesNonEmptyState(t *testing.T) {
	e := openTestCA(t)
	dest := filepath.Join(t.TempDir(), "backup")
	if _, err := e.CA.Backup(context.Background(), dest); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(state, "notes.txt")
	if err := os.WriteFile(mine, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.Restore(dest, state, ca.RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Restore over a non-empty directory: %v", err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Fatal("refused restore touched the directory")
	}
	// Not over the running CA's directory, even forced.
	if _, _, err := ca.Restore(dest, e.Dir, ca.RestoreOptions{Force: true}); err == nil {
		t.Fatal("forced Restore replaced the state directory of a running CA")
	}
	_, replaced, err := ca.Restore(dest, state, ca.RestoreOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(replaced, "notes.txt")); err != nil || string(data) != "mine" {
		t.Fatalf("the replaced directory is not kept at %s: %v", replaced, err)
	}
	if _, err := os.Stat(filepath.Join(state, ca.RestoredFile)); err != nil {
		t.Fatalf("forced restore: %v", err)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}
