package meshlab_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// TestBackupRestoreCycle: live agents across a backup, more issuance on
// the CA, the CA's host lost and its state restored from the backup, then
// caught up from the lost host's log and an agent's CRL. While restored
// the CA issues nothing; once caught up no agent raises the
// transparency-log alarm or refuses the CRL, a new device enrolls and gets
// an overlay address no other device holds, and every agent accepts it.
func TestBackupRestoreCycle(t *testing.T) {
	m := meshlab.NewInProc(t, meshlab.InProcOptions{})
	ctx := context.Background()
	a1 := m.AddNode(t, "a1", meshlab.NodeOptions{})
	backup := filepath.Join(t.TempDir(), "backup")
	if _, err := m.Server.CA.Backup(ctx, backup); err != nil {
		t.Fatalf("backup: %v", err)
	}
	// After the backup: two more devices, more CRLs.
	a2 := m.AddNode(t, "a2", meshlab.NodeOptions{})
	a3 := m.AddNode(t, "a3", meshlab.NodeOptions{})
	nodes := []meshlab.Node{a1, a2, a3}
	meshlab.WaitMesh(t, 30*time.Second, nodes...)
	for range 3 {
		if err := m.Server.CA.RefreshCRL(ctx); err != nil {
			t.Fatal(err)
		}
	}
	held := m.Server.CA.CRL()
	meshlab.Eventually(t, 20*time.Second, "every agent holds the newest CRL", func() error {
		for _, n := range []*meshlab.InProcNode{a1, a2, a3} {
			if der, _ := os.ReadFile(filepath.Join(n.StateDir, "crl.der")); string(der) != string(held) {
				return fmt.Errorf("%s does not hold it yet", n.Name)
			}
		}
		return nil
	})
	before := map[string]string{}
	for _, n := range []*meshlab.InProcNode{a1, a2, a3} {
		before[n.Name] = n.Status(t).CRL.Number
	}

	// The CA's host is lost: its state directory comes back from the backup.
	m.StopServer(t)
	state := filepath.Join(m.Dir, "server")
	lost := filepath.Join(m.Dir, "lost")
	if err := os.Rename(state, lost); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.Restore(backup, state, ca.RestoreOptions{}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	m.StartServer(t)
	if m.Server.CA.Restored() == nil {
		t.Fatal("the restored server is not catching up")
	}
	if _, err := m.StartNode(t, "early", meshlab.NodeOptions{Wait: 3 * time.Second}); err == nil {
		t.Fatal("a device enrolled at a CA still catching up")
	}

	m.StopServer(t)
	crl, err := os.ReadFile(filepath.Join(a3.StateDir, "crl.der"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := ca.CatchUp(ctx, state, ca.CatchUpOptions{LogFrom: filepath.Join(lost, "translog.db"), CRLs: [][]byte{crl}})
	if err != nil {
		t.Fatalf("catch-up: %v", err)
	}
	t.Logf("caught up: %+v", res)
	m.StartServer(t)

	a4 := m.AddNode(t, "a4", meshlab.NodeOptions{})
	nodes = append(nodes, a4)
	seen := map[string]string{}
	for _, n := range []*meshlab.InProcNode{a1, a2, a3, a4} {
		if other, ok := seen[n.V4().String()]; ok {
			t.Fatalf("%s and %s hold the same overlay address %s", n.Name, other, n.V4())
		}
		seen[n.V4().String()] = n.Name
	}
	meshlab.WaitMesh(t, 30*time.Second, nodes...)
	meshlab.Eventually(t, 20*time.Second, "every agent takes the restored CA's CRL", func() error {
		for _, n := range []*meshlab.InProcNode{a1, a2, a3} {
			if st := n.Status(t); st.CRL.Number == before[n.Name] || st.CRL.Refused != "" {
				return fmt.Errorf("%s: CRL number %s (before %s), refused %q", n.Name, st.CRL.Number, before[n.Name], st.CRL.Refused)
			}
		}
		return nil
	})
	for _, n := range []*meshlab.InProcNode{a1, a2, a3, a4} {
		st := n.Status(t)
		if st.Log.Alarm != "" {
			t.Errorf("%s raised the transparency-log alarm: %s", n.Name, st.Log.Alarm)
		}
		for _, al := range st.Alarms {
			if al.Severity == agent.SeverityDegraded {
				t.Errorf("%s: alarm %s: %s", n.Name, al.Code, al.Problem)
			}
		}
	}
}
