package hostile_test

// A hostile coordinator relays the peer's real bundle without its proof or
// with a wrong one (another certificate's, truncated, altered, another
// index or tree size, a checkpoint of another tree or signed by another
// key, a whole other log), and certificates the CA's own intermediate
// signed but never logged: each is refused as not-logged and nothing of
// the sender's traffic arrives. The positive control, the peer's real proof
// (and a newer one from the CA), is accepted and its traffic flows.

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/translog"
	"github.com/certmesh/certmesh/tstest/testca"
)

// TestLoggedPeerProofs: the legitimate peer's real bundle relayed without
// its inclusion proof or with a wrong one is refused and its traffic
// does not arrive; with its real proof it is accepted and its traffic
// flows; certificates the CA's intermediate signed but never logged are
// refused whatever proof comes with them.
func TestLoggedPeerProofs(t *testing.T) {
	f := newLogFixture(t, logOptions{})
	v, p := f.Victim, f.Peer
	label := string(p.Self.DeviceID)
	proof := p.Conn.Publish.Inclusion
	if proof == nil || v.Conn.Publish.Inclusion == nil {
		t.Fatalf("the agents published no inclusion proof (victim %v, peer %v)", v.Conn.Publish.Inclusion, proof)
	}
	peerBundle, err := certs.ParseBundle(p.Conn.Publish.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := translog.NewVerifier(f.CA.LogKey())
	if err != nil {
		t.Fatal(err)
	}
	// The baseline every case edits: the peer's proof is valid.
	if err := translog.VerifyCertificateIncluded(peerBundle.Machine.Raw, *proof, verifier); err != nil {
		t.Fatalf("the peer's own inclusion proof does not verify: %v", err)
	}
	if len(proof.Proof) == 0 || proof.TreeSize < 2 {
		t.Fatalf("the peer's proof is in a tree of %d entries with %d hashes; the cases need a proof path", proof.TreeSize, len(proof.Proof))
	}
	older := v.Conn.Publish.Inclusion // the victim enrolled first: a smaller tree
	if older.TreeSize >= proof.TreeSize {
		t.Fatalf("the victim's proof is in a tree of %d entries, the peer's %d: want it smaller", older.TreeSize, proof.TreeSize)
	}

	// The peer knows the victim (with its proof proof), so that it can send
	// as soon as the victim accepts it.
	send(t, p.Conn, upsert(f.loggedPeer(v)))
	waitStatus(t, p, "the peer to verify the victim", func(st *agent.Status) bool { _, ok := peerOf(st, v.Self.DeviceID); return ok })
	// The victim's witness starts at the CA's current tree.
	cp := f.CA.Checkpoint()
	if st := f.relayCheckpoint(t, v, cp); st.Log.Size != f.parse(t, cp).Size || st.Log.Alarm != "" {
		t.Fatalf("after the CA's checkpoint the victim's log status is %+v, want size %d and no alarm", st.Log, f.parse(t, cp).Size)
	}
	newer := f.growLog(t, 2)
	newerSize := f.parse(t, newer).Size

	// The peer's certificate in a log of its own under another key, with
	// the CA's log's name.
	otherLog := openLog(t, otherLogSigner(t, translog.Origin(trustDomain)), []translog.Entry{certEntry(peerBundle)})
	edited := func(edit func(b *translog.InclusionBundle)) func(*testing.T) *translog.InclusionBundle {
		return func(*testing.T) *translog.InclusionBundle {
			b := cloneInclusion(proof)
			edit(b)
			return b
		}
	}
	otherIndex := proof.Index - 1
	if proof.Index == 0 {
		otherIndex = 1
	}
	for _, c := range []struct {
		name string
		incl func(*testing.T) *translog.InclusionBundle
	}{
		{"no-inclusion-proof", func(*testing.T) *translog.InclusionBundle { return nil }},
		{"empty-inclusion-bundle", func(*testing.T) *translog.InclusionBundle { return &translog.InclusionBundle{} }},
		{"proof-of-another-certificate", func(*testing.T) *translog.InclusionBundle { return cloneInclusion(older) }},
		{"proof-truncated", edited(func(b *translog.InclusionBundle) { b.Proof = b.Proof[:len(b.Proof)-1] })},
		{"proof-empty", edited(func(b *translog.InclusionBundle) { b.Proof = nil })},
		{"proof-hash-altered", edited(func(b *translog.InclusionBundle) { b.Proof[0][0] ^= 1 })},
		{"proof-hash-short", edited(func(b *translog.InclusionBundle) { b.Proof[0] = b.Proof[0][:31] })},
		{"proof-extra-hash", edited(func(b *translog.InclusionBundle) { b.Proof = append(b.Proof, b.Proof[0]) })},
		{"index-changed", edited(func(b *translog.InclusionBundle) { b.Index = otherIndex })},
		{"index-beyond-tree", edited(func(b *translog.InclusionBundle) { b.Index = b.TreeSize })},
		{"tree-size-changed", edited(func(b *translog.InclusionBundle) { b.TreeSize++ })},
		{"checkpoint-of-an-older-tree", edited(func(b *translog.InclusionBundle) {
			b.Checkpoint, b.TreeSize = bytes.Clone(older.Checkpoint), older.TreeSize
		})},
		{"checkpoint-of-a-newer-tree", edited(func(b *translog.InclusionBundle) {
			b.Checkpoint, b.TreeSize = bytes.Clone(newer), newerSize
		})},
		{"checkpoint-signed-by-another-key", func(t *testing.T) *translog.InclusionBundle {
			b := cloneInclusion(proof)
			b.Checkpoint = resign(t, proof.Checkpoint, otherLogSigner(t, translog.Origin(trustDomain)))
			return b
		}},
		{"checkpoint-root-altered", func(t *testing.T) *translog.InclusionBundle {
			b := cloneInclusion(proof)
			b.Checkpoint = alteredRoot(t, proof.Checkpoint)
			return b
		}},
		{"checkpoint-garbage", edited(func(b *translog.InclusionBundle) { b.Checkpoint = []byte("certmesh\n\nnot a checkpoint\n") })},
		{"checkpoint-missing", edited(func(b *translog.InclusionBundle) { b.Checkpoint = nil })},
		{"whole-proof-from-another-log", func(t *testing.T) *translog.InclusionBundle { return proofIn(t, otherLog, peerBundle) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			pp := f.loggedPeer(p)
			pp.Inclusion = c.incl(t)
			send(t, v.Conn, upsert(pp))
			st := f.syncNode(t, v)
			refusedNotLogged(t, v, st, label, p.Self.DeviceID, p.Self.WireGuardKey)
			if st.Log.Alarm != "" {
				t.Errorf("a wrong proof raised the log alarm: %s", st.Log.Alarm)
			}
		})
	}
	f.keptOut(t, p)

	// The positive control: the peer's proof proof, then a fresh one the CA
	// hands out against its newest tree.
	send(t, v.Conn, upsert(f.loggedPeer(p)))
	st := f.syncNode(t, v)
	if r, ok := rejectionOf(st, label); ok {
		t.Fatalf("the victim refused the peer with its proof inclusion proof: %s: %s", r.Reason, r.Error)
	}
	if ps, ok := peerOf(st, p.Self.DeviceID); !ok || ps.WireGuardKey != p.Self.WireGuardKey {
		t.Fatalf("the peer with its proof inclusion proof is not a verified peer: %+v (found %v)", ps, ok)
	}
	f.peerReaches(t)
	fresh := f.CA.InclusionOf(peerBundle.Machine)
	if fresh == nil || fresh.TreeSize != newerSize {
		t.Fatalf("the CA's inclusion proof of the peer: %+v, want one in the tree of %d", fresh, newerSize)
	}
	pp := f.loggedPeer(p)
	pp.Inclusion = fresh
	send(t, v.Conn, upsert(pp))
	if r, ok := rejectionOf(f.syncNode(t, v), label); ok {
		t.Errorf("the victim refused the CA's fresh proof of the peer: %s: %s", r.Reason, r.Error)
	}

	// A user certificate the proof intermediate issued for the peer but the
	// CA never logged: the user is refused, the machine stays.
	t.Run("user-certificate-never-logged", func(t *testing.T) {
		u := f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail))
		for _, ui := range []*translog.InclusionBundle{nil, proof} {
			pp := f.loggedPeer(p)
			pp.Bundle, pp.UserInclusion = withUser(p.Conn.Publish.Bundle, u), ui
			send(t, v.Conn, upsert(pp))
			st := f.syncNode(t, v)
			ps := checkMachineUnchanged(t, f.fixture, st, peerBundle)
			if ps.User != nil || !strings.Contains(ps.UserRejected, "("+string(agent.ReasonUserNotLogged)+")") {
				t.Errorf("user proof %v: the peer shows user %+v, user_rejected %q; want no user, %q", ui != nil, ps.User, ps.UserRejected, agent.ReasonUserNotLogged)
			}
		}
		send(t, v.Conn, upsert(f.loggedPeer(p)))
		f.syncNode(t, v)
		f.peerReaches(t)
	})

	// Certificates the CA's own intermediate signed (they chain, they fit
	// the profile) but that the CA never logged.
	t.Run("never-logged", func(t *testing.T) { runAttacks(t, f.fixture, neverLoggedAttacks(f)) })
	if st := f.syncNode(t, v); st.Log.Alarm != "" {
		t.Errorf("the victim raised a log alarm: %s", st.Log.Alarm)
	}
	checkDeviceMatchesStatus(t, v)
}

// neverLoggedAttacks are bundles the real intermediate issues for the
// attacker, which chain to the root, with no proof, someone else's, or a
// proof in another log.
func neverLoggedAttacks(f *logFixture) []attack {
	chains := func(t *testing.T, w certs.WireBundle) {
		t.Helper()
		b, err := certs.ParseBundle(w)
		if err == nil {
			_, err = certs.Verify(b, f.CA.Roots(), nil, time.Now())
		}
		if err != nil {
			t.Fatalf("the forged bundle does not even chain: %v", err)
		}
	}
	with := func(incl func(t *testing.T, b certs.Bundle) *translog.InclusionBundle) func(*testing.T, *fixture, *attacker) wire.Peer {
		return func(t *testing.T, ff *fixture, a *attacker) wire.Peer {
			p := issued(nil)(t, ff, a)
			chains(t, p.Bundle)
			b, err := certs.ParseBundle(p.Bundle)
			if err != nil {
				t.Fatal(err)
			}
			p.Inclusion = incl(t, b)
			return p
		}
	}
	return []attack{
		{name: "never-logged-no-proof", want: agent.ReasonNotLogged,
			peer: with(func(*testing.T, certs.Bundle) *translog.InclusionBundle { return nil })},
		{name: "never-logged-with-another-certificates-proof", want: agent.ReasonNotLogged,
			peer: with(func(*testing.T, certs.Bundle) *translog.InclusionBundle {
				return cloneInclusion(f.Victim.Conn.Publish.Inclusion)
			})},
		{name: "never-logged-proof-in-a-log-under-another-key", want: agent.ReasonNotLogged,
			peer: with(func(t *testing.T, b certs.Bundle) *translog.InclusionBundle {
				// The real log's entries and the forged certificate, signed
				// by a key that has the CA's log's name.
				l := openLog(t, otherLogSigner(t, translog.Origin(trustDomain)),
					append(f.realEntries(t, f.parse(t, f.CA.Checkpoint()).Size), certEntry(b)))
				return proofIn(t, l, b)
			})},
	}
}
