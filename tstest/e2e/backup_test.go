package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBackupRestoreThroughBinaries: the operator's commands, as the docs
// give them: certmesh-server backup of the running server, a device
// enrolled after it, the state directory lost, restore (the restored
// server refuses to issue), catch-up from the lost log and an agent's
// crl.der, then a new device enrolls with an address nobody holds and
// every agent meshes with it, without a log alarm.
func TestBackupRestoreThroughBinaries(t *testing.T) {
	m := NewMesh(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	state := m.Server.StateDir
	backup := filepath.Join(t.TempDir(), "backup")
	if out, err := m.ServerCLI(ctx, "backup", "--state", state, backup); err != nil || !strings.Contains(out, "backed up") {
		t.Fatalf("backup of the running server: %v\n%s", err, out)
	}
	a2, err := m.AddAgent(ctx, "a2")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.StopServer(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	lost := state + ".lost"
	if err := os.Rename(state, lost); err != nil {
		t.Fatal(err)
	}
	if out, err := m.ServerCLI(ctx, "restore", backup, "--state", state); err != nil || !strings.Contains(out, "catching up") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	out, err := m.ServerCLI(ctx, "catch-up", "--state", state, "--log-from", filepath.Join(lost, "translog.db"),
		"--crl-from", filepath.Join(a2.StateDir, "crl.der"))
	if err != nil {
		t.Fatalf("catch-up: %v\n%s", err, out)
	}
	t.Log(strings.TrimSpace(out))
	if err := m.RunServer(ctx); err != nil {
		t.Fatal(err)
	}
	a3, err := m.AddAgent(ctx, "a3")
	if err != nil {
		t.Fatal(err)
	}
	agents := m.Agents()
	for _, a := range agents {
		if a != a3 && a.V4() == a3.V4() {
			t.Fatalf("a3 got %s, the address of %s", a3.V4(), a.Name)
		}
	}
	if err := m.WaitConverged(ctx, agents, false); err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		st, err := a.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Log.Alarm != "" || st.CRL.Refused != "" {
			t.Errorf("%s: log alarm %q, CRL refused %q", a.Name, st.Log.Alarm, st.CRL.Refused)
		}
	}
}
