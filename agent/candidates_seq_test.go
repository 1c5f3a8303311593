package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/tstest/testca"
)

// TestPeerSequenceSurvivesRestart: an agent that accepted a peer's newer
// advertisement, stopped and started again refuses a replay of the
// peer's older, still fresh one: the sequence numbers are saved at the
// stop (and at most peerSeqSaveEvery apart while they arrive). Red before
// the book was saved: the restarted agent took the older advertisement's
// endpoints, aiming its handshakes where a coordinator chose.
func TestPeerSequenceSurvivesRestart(t *testing.T) {
	pki := testca.New(t, testTD)
	clk := testclock.At(time.Now())
	a := newAdvertisingPeer(t, pki, "alice", clk.Now)
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)

	older := a.sign(t, "192.0.2.1:51820")
	clk.Advance(time.Second)
	newer := a.sign(t, "198.51.100.7:51820")
	book := loadPeerSeqs(dir, log)
	if _, err := book.accept(a.id, newer, clk.Now()); err != nil {
		t.Fatal(err)
	}
	book.flush(clk.Now()) // the agent stops

	restarted := loadPeerSeqs(dir, log)
	eps, err := restarted.accept(a.id, older, clk.Now())
	if endpoint.ReasonOf(err) != endpoint.ReasonReplayed || eps != nil {
		t.Fatalf("after a restart the older advertisement gave %v (%v), want it refused as a replay with no endpoints", eps, err)
	}
	// The advertisement accepted before the restart is the peer's current
	// one: it is taken again.
	eps, err = restarted.accept(a.id, newer, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	wantEndpoints(t, eps, "198.51.100.7:51820")
	clk.Advance(time.Second)
	eps, err = restarted.accept(a.id, a.sign(t, "203.0.113.9:51820"), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	wantEndpoints(t, eps, "203.0.113.9:51820")
	fi, err := os.Stat(filepath.Join(dir, peerSeqFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", peerSeqFile, fi.Mode())
	}
}

// TestCorruptPeerSequencesIgnored: a corrupt file does not stop the agent;
// the book starts empty.
func TestCorruptPeerSequencesIgnored(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, peerSeqFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b := loadPeerSeqs(dir, slog.New(slog.DiscardHandler)); len(b.peers) != 0 {
		t.Fatalf("a corrupt file gave %d peers", len(b.peers))
	}
}
