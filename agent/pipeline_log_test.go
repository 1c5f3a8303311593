package agent

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/translog"
)

// testLog is a real transparency log (translog.Log) under a fresh key.
type testLog struct {
	log  *translog.Log
	skey string
	vkey string
}

func newTestLog(t *testing.T) *testLog {
	t.Helper()
	skey, vkey, err := translog.GenerateKey(translog.Origin(testTD))
	if err != nil {
		t.Fatal(err)
	}
	return openTestLog(t, skey, vkey)
}

// openTestLog opens a new, empty log signed with skey: with another
// log's key, a fork of it.
func openTestLog(t *testing.T, skey, vkey string) *testLog {
	t.Helper()
	signer, _, err := translog.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := translog.Open(filepath.Join(t.TempDir(), "log.db"), signer, translog.Origin(testTD))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &testLog{log: l, skey: skey, vkey: vkey}
}

func (l *testLog) handler(t *testing.T) http.Handler {
	t.Helper()
	h, err := l.log.Handler(l.vkey)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// add logs a certificate and returns its inclusion proof.
func (l *testLog) add(t *testing.T, der []byte) *translog.InclusionBundle {
	idx, err := l.log.Append(context.Background(), translog.CertificateEntry(der))
	if err != nil {
		t.Errorf("testlog: %v", err)
		return nil
	}
	b, err := l.log.InclusionBundle(idx)
	if err != nil {
		t.Errorf("testlog: %v", err)
		return nil
	}
	return &b
}

// TestPipelineRequiresLogged: with require_logged (the default), a peer is
// configured only with a valid inclusion proof in the CA's log; the agent
// follows the log's checkpoints with consistency proofs from the CA, and a
// proof from a fork of the log (the log key signing a second history)
// raises the alarm and configures nothing.
func TestPipelineRequiresLogged(t *testing.T) {
	r, d := newEnrollRig(t)
	r.cfg.AllowUnlogged = false
	r.start(t)
	st := r.status(t).Log
	if !st.RequireLogged || st.Origin != translog.Origin(testTD) || st.Size != 1 || st.Alarm != "" {
		t.Fatalf("log status after enrollment: %+v", st)
	}
	logged := func(t *testing.T, l *testLog, label, host string, port uint16) (wire.Peer, certs.MachineProfile) {
		t.Helper()
		p := r.pki.NewProfile(t, host)
		wp := r.peer(t, label, p, port)
		wp.Inclusion = l.add(t, wp.Bundle.Machine)
		return wp, p
	}
	alice, ap := logged(t, d.log, "a", "alice", 7001)
	bob := r.peer(t, "b", r.pki.NewProfile(t, "bob"), 7002) // never logged
	r.send(t, &wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{alice, bob}})
	ka, da := want(ap, 7001)
	r.waitDevice(t, map[certs.WireGuardKey]devPeer{ka: da})
	r.eventually(t, "bob refused", func() error {
		if got := rejected(r.status(t), "b"); got != ReasonNotLogged {
			return fmt.Errorf("bob refused as %q, want %q", got, ReasonNotLogged)
		}
		return nil
	})
	if st := r.status(t).Log; st.Size != 2 {
		t.Fatalf("alice's proof did not move the witness to tree 2: %+v", st)
	}

	// The log grows; its checkpoint, relayed, is proven and followed.
	for range 3 {
		d.log.add(t, r.peer(t, "x", r.pki.NewProfile(t, "other"), 1).Bundle.Machine)
	}
	r.send(t, doc(wire.DocCheckpoint, d.log.log.Checkpoint()))
	r.eventually(t, "checkpoint followed", func() error {
		if st := r.status(t).Log; st.Size != 5 || st.Alarm != "" {
			return fmt.Errorf("log status %+v", st)
		}
		return nil
	})

	// A fork: the same key signs another history of the same size.
	fork := openTestLog(t, d.log.skey, d.log.vkey)
	var carol wire.Peer
	for i := range 5 {
		carol, _ = logged(t, fork, "c", fmt.Sprintf("carol%d", i), 7003)
	}
	r.send(t, upsert(carol))
	r.eventually(t, "alarm", func() error {
		st := r.status(t)
		if st.Log.Alarm == "" || rejected(st, "c") == "" {
			return fmt.Errorf("log %+v, carol refused as %q", st.Log, rejected(st, "c"))
		}
		return nil
	})
	r.waitDevice(t, map[certs.WireGuardKey]devPeer{ka: da})
}
