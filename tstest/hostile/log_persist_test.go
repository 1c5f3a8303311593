package hostile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/agent"
)

// TestLogWitnessMovesOnlyWhenStored: the victim's witness file cannot be
// replaced (a directory stands where the new version must go, which
// rename(2) cannot replace, root or not). The CA's next checkpoint is then
// not taken, nor a new peer whose inclusion proof needs it: nothing the
// agent acts on is missing from disk, so a restart forgets nothing. Once
// the file can be written the checkpoint is taken and stored; after a
// restart the agent holds it, and a fork of that size is a split view.
func TestLogWitnessMovesOnlyWhenStored(t *testing.T) {
	f := newLogFixture(t, logOptions{noPeer: true})
	cp := f.holdCurrentCheckpoint(t)
	path := filepath.Join(f.Victim.StateDir, "witness.json")
	held, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the victim stored no witness: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}

	// A device enrolls (the log grows); its proof is against a tree the
	// victim has not taken.
	late := f.startAgent(t, f.CAURL, "late", func(c *agent.Config) { c.AllowUnlogged = false })
	next := f.growLog(t, 2)
	st := f.relayCheckpoint(t, f.Victim, next)
	if st.Log.Size != cp.Size || st.Log.Root != cp.Root.String() {
		t.Errorf("the victim took the tree of size %d it could not store; log status %+v, want size %d", st.Log.Size, st.Log, cp.Size)
	}
	if !strings.Contains(f.Victim.logs.String(), "cannot store the log witness") {
		t.Errorf("the victim's log does not say that the witness could not be stored")
	}
	send(t, f.Victim.Conn, upsert(f.loggedPeer(late)))
	st = waitStatus(t, f.Victim, "a verdict on the late peer", func(st *agent.Status) bool {
		_, accepted := peerOf(st, late.Self.DeviceID)
		_, refused := rejectionOf(st, string(late.Self.DeviceID))
		return accepted || refused
	})
	refusedNotLogged(t, f.Victim, st, string(late.Self.DeviceID), late.Self.DeviceID, late.Self.WireGuardKey)

	// The disk is mended as a failed atomic write leaves it: the old file.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, held, 0o600); err != nil {
		t.Fatal(err)
	}
	want := f.parse(t, next)
	if st := f.relayCheckpoint(t, f.Victim, next); st.Log.Size != want.Size {
		t.Fatalf("with the witness writable again the victim did not take size %d: %+v", want.Size, st.Log)
	}

	f.Victim.stop()
	f.Victim = f.startAgent(t, f.CAURL, "victim", func(c *agent.Config) { c.AllowUnlogged = false })
	st = waitStatus(t, f.Victim, "the restored witness", func(st *agent.Status) bool { return st.Log.Origin != "" })
	if st.Log.Size != want.Size || st.Log.Root != want.Root.String() {
		t.Fatalf("after a restart the victim holds %+v, want the stored size %d", st.Log, want.Size)
	}
	fork := f.fork(t, want.Size-2, f.hiddenEntry(t), f.hiddenEntry(t))
	f.relayCheckpoint(t, f.Victim, fork.Checkpoint())
	f.expectLogAlarm(t, want, "split view")
}
