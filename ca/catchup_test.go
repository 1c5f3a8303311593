package ca_test

import (
	"context"
	"crypto/x509"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/translog"
)

// checkpointOf parses the CA's current checkpoint with its log key.
func checkpointOf(t *testing.T, c *ca.CA) translog.Checkpoint {
	t.Helper()
	v, err := translog.NewVerifier(c.LogKey())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := v.ParseCheckpoint(c.Checkpoint())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func crlNumber(t *testing.T, der []byte) uint64 {
	t.Helper()
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return rl.Number.Uint64()
}

// TestCatchUpContinuesHistory: a CA restored from a backup, then more
// issuance and a revocation on the lost one, catches up from a copy of the
// log and the newest CRL: its log is the lost one's tree (the same root at
// the same size, so no witness sees a fork), its next CRL number passes
// the one agents hold, the revocation stays in its CRL, and a new device
// gets an address no certificate holds.
func TestCatchUpContinuesHistory(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	first := e.Enroll(t, newTestDevice(t, "first"), e.Token(t))
	dest := filepath.Join(t.TempDir(), "backup")
	if _, err := e.CA.Backup(ctx, dest); err != nil {
		t.Fatal(err)
	}
	e.Enroll(t, newTestDevice(t, "second"), e.Token(t))
	e.Enroll(t, newTestDevice(t, "third"), e.Token(t))
	if _, err := e.CA.Revoke(ctx, first.DeviceID); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := e.CA.RefreshCRL(ctx); err != nil {
			t.Fatal(err)
		}
	}
	seen, heldCRL := checkpointOf(t, e.CA), e.CA.CRL()
	lh, err := e.CA.LogHandler()
	if err != nil {
		t.Fatal(err)
	}
	mirror := httptest.NewServer(lh)
	defer mirror.Close()

	dir := filepath.Join(t.TempDir(), "restored")
	if _, _, err := ca.Restore(dest, dir, ca.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	afterRestore(t, dir)
	if _, err := ca.CatchUp(ctx, dir, ca.CatchUpOptions{LogFrom: mirror.URL}); err == nil || !strings.Contains(err.Error(), "CRL") {
		t.Fatalf("CatchUp without a CRL: %v", err)
	}
	res, err := ca.CatchUp(ctx, dir, ca.CatchUpOptions{LogFrom: mirror.URL, CRLs: [][]byte{heldCRL}})
	if err != nil {
		t.Fatalf("CatchUp: %v", err)
	}
	t.Logf("caught up: %+v", res)
	if res.Appended == 0 || res.Certificates != 2 || res.Revocations != 1 || res.AddressIndex != 3 {
		t.Fatalf("catch-up learned %+v", res)
	}
	r := restoreOpen(t, dir)
	if r.CA.Restored() != nil {
		t.Fatal("still restored after the catch-up")
	}
	if got := checkpointOf(t, r.CA); got.Size != seen.Size || got.Root != seen.Root {
		t.Fatalf("restored log is size %d root %s, agents saw size %d root %s", got.Size, got.Root, seen.Size, seen.Root)
	}
	if n := crlNumber(t, r.CA.CRL()); n <= crlNumber(t, heldCRL) {
		t.Fatalf("restored CRL number %d does not pass the held %d", n, crlNumber(t, heldCRL))
	}
	rl, _ := x509.ParseRevocationList(r.CA.CRL())
	if len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Text(16) != first.Serial {
		t.Fatalf("restored CRL lists %v, want the revoked %s", rl.RevokedCertificateEntries, first.Serial)
	}
	r.nextIndex = 4 // not 2 or 3: the lost CA handed those out
	r.Enroll(t, newTestDevice(t, "fourth"), r.Token(t))
}

func TestCatchUpRefusesAnotherHistory(t *testing.T) {
	e := openTestCA(t)
	ctx := context.Background()
	dest := filepath.Join(t.TempDir(), "backup")
	if _, err := e.CA.Backup(ctx, dest); err != nil {
		t.Fatal(err)
	}
	held := e.CA.CRL()
	dir := filepath.Join(t.TempDir(), "restored")
	if _, _, err := ca.Restore(dest, dir, ca.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	afterRestore(t, dir)
	before, _ := os.ReadFile(filepath.Join(dir, "translog.db"))
	other := openTestCA(t) // another CA: its log is signed by another key
	if _, err := ca.CatchUp(ctx, dir, ca.CatchUpOptions{LogFrom: filepath.Join(other.Dir, "translog.db"), CRLs: [][]byte{held}}); err == nil {
		t.Fatal("CatchUp accepted another CA's log")
	} else {
		t.Logf("refused: %v", err)
	}
	if _, err := ca.CatchUp(ctx, dir, ca.CatchUpOptions{LogFrom: mirrorOf(t, e), CRLs: [][]byte{other.CA.CRL()}}); err == nil || !strings.Contains(err.Error(), "not signed by this CA") {
		t.Fatalf("CatchUp with another CA's CRL: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "translog.db"))
	if string(before) != string(after) {
		t.Fatal("a refused catch-up changed the log")
	}
	if _, err := os.Stat(filepath.Join(dir, ca.RestoredFile)); err != nil {
		t.Fatal("a refused catch-up removed the restored mark")
	}
}

func mirrorOf(t *testing.T, e *testEnv) string {
	lh, err := e.CA.LogHandler()
	if err != nil {
		t.Fatal(err)
	}
	m := httptest.NewServer(lh)
	t.Cleanup(m.Close)
	return m.URL
}
