package server_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/statedir"
	"github.com/certmesh/certmesh/server"
)

// TestHotBackupOverAdminSocket: what certmesh-server backup does while the
// server runs: the copy cannot be taken from outside (the state directory
// is locked), so the running server takes it over admin.sock; the result
// restores.
func TestHotBackupOverAdminSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: td}); err != nil {
		t.Fatal(err)
	}
	start(t, server.Options{StateDir: dir})
	ctx := context.Background()
	dest := filepath.Join(t.TempDir(), "backup")
	if _, err := ca.BackupStopped(ctx, dir, dest, time.Now()); !errors.Is(err, statedir.ErrLocked) {
		t.Fatalf("BackupStopped of a running server's directory: %v, want ErrLocked", err)
	}
	if _, err := ca.NewAdminClient(dir).Backup(ctx, "relative/dir"); err == nil {
		t.Fatal("the server took a backup into a relative path")
	}
	m, err := ca.NewAdminClient(dir).Backup(ctx, dest)
	if err != nil {
		t.Fatalf("hot backup: %v", err)
	}
	if !m.Hot || m.LogSize == 0 {
		t.Fatalf("manifest %+v", m)
	}
	if _, _, err := ca.Restore(dest, filepath.Join(t.TempDir(), "restored"), ca.RestoreOptions{}); err != nil {
		t.Fatalf("restoring the hot backup: %v", err)
	}
}
