package hostile_test

// With the log's own signing key (STATE/log.key, what a thief of the CA
// host has beside the intermediate), the attacker forks the log: a second
// tree of the same size (split view), one of a larger size that does not
// extend what the agent holds, a proof of a hidden certificate against
// the fork. Each raises Status.Log.Alarm. A forked checkpoint the agent
// cannot check at once (beyond the CA's log) is refused as a peer's proof
// and kept pending, and proven against the real log once it has grown
// past it. (These cases found three gaps in the agent, since fixed.)

import (
	"net/netip"
	"testing"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/translog"
)

// TestLogCheckpointAlarms: checkpoints the coordinator relays. The log's
// real next checkpoints are taken (consistency proofs fetched from the
// CA); checkpoints not signed by the log's key are ignored; with the log's
// own key, a second tree of a size the agent saw, a larger tree that does
// not extend the one it holds, and a proof of a hidden certificate against
// a fork each raise the alarm. Every case has its own agent: the alarm
// stays until the agent restarts.
func TestLogCheckpointAlarms(t *testing.T) {
	t.Parallel()
	start := func(t *testing.T) (*logFixture, translog.Checkpoint) {
		f := newLogFixture(t, logOptions{noPeer: true})
		return f, f.holdCurrentCheckpoint(t)
	}

	t.Run("control-consistent-growth", func(t *testing.T) {
		f, cp := start(t)
		next := f.growLog(t, 3)
		st := f.relayCheckpoint(t, f.Victim, next)
		if want := f.parse(t, next); st.Log.Size != want.Size || st.Log.Root != want.Root.String() {
			t.Fatalf("the CA's next checkpoint was not taken: log status %+v, want size %d", st.Log, want.Size)
		}
		// The older checkpoint again, and the same again: nothing moves.
		for _, signed := range [][]byte{cp.Signed, next} {
			if st := f.relayCheckpoint(t, f.Victim, signed); st.Log.Size != cp.Size+3 || st.Log.Alarm != "" {
				t.Errorf("relaying a checkpoint of size %d again: log status %+v", f.parse(t, signed).Size, st.Log)
			}
		}
	})

	t.Run("not-the-logs-key", func(t *testing.T) {
		f, cp := start(t)
		next := f.growLog(t, 1)
		for _, c := range []struct {
			name   string
			signed []byte
		}{
			{"another-key-same-origin", resign(t, next, otherLogSigner(t, translog.Origin(trustDomain)))},
			{"another-origin", resign(t, next, otherLogSigner(t, translog.Origin("evil.example")))},
			{"root-altered", alteredRoot(t, next)},
			{"truncated", next[:len(next)-10]},
			{"garbage", []byte("garbage\n")},
		} {
			t.Run(c.name, func(t *testing.T) {
				st := f.relayCheckpoint(t, f.Victim, c.signed)
				if st.Log.Size != cp.Size || st.Log.Root != cp.Root.String() || st.Log.Alarm != "" {
					t.Errorf("log status %+v, want size %d unchanged and no alarm", st.Log, cp.Size)
				}
			})
		}
	})

	t.Run("split-view-same-size", func(t *testing.T) {
		f, cp := start(t)
		fork := f.fork(t, cp.Size-1, f.hiddenEntry(t))
		f.relayCheckpoint(t, f.Victim, fork.Checkpoint())
		f.expectLogAlarm(t, cp, "split view")
	})
	// After a split view, a peer the victim already has stays; a new one
	// is accepted under the default policy and refused under refuse-new.
	for _, pol := range []agent.DegradedPolicy{agent.DegradedKeep, agent.DegradedRefuseNew} {
		t.Run("new-peer-after-an-alarm-"+string(pol), func(t *testing.T) {
			f := newLogFixture(t, logOptions{victim: func(c *agent.Config) { c.LogAlarmPolicy = pol }})
			send(t, f.Victim.Conn, upsert(f.loggedPeer(f.Peer)))
			waitStatus(t, f.Victim, "the peer configured", func(st *agent.Status) bool {
				_, ok := peerOf(st, f.Peer.Self.DeviceID)
				return ok
			})
			cp := f.holdCurrentCheckpoint(t)
			f.relayCheckpoint(t, f.Victim, f.fork(t, cp.Size-1, f.hiddenEntry(t)).Checkpoint())
			f.expectLogAlarm(t, cp, "split view")

			late := f.startAgent(t, f.CAURL, "late", func(c *agent.Config) { c.AllowUnlogged = false })
			send(t, f.Victim.Conn, upsert(f.loggedPeer(late)))
			st := waitStatus(t, f.Victim, "a verdict on the new peer", func(st *agent.Status) bool {
				_, accepted := peerOf(st, late.Self.DeviceID)
				_, refused := rejectionOf(st, string(late.Self.DeviceID))
				return accepted || refused
			})
			if st.Log.AlarmPolicy != pol {
				t.Errorf("log status says alarm policy %q, want %q", st.Log.AlarmPolicy, pol)
			}
			_, accepted := peerOf(st, late.Self.DeviceID)
			_, configured := devicePeer(t, f.Victim, late.Self.WireGuardKey)
			r, refused := rejectionOf(st, string(late.Self.DeviceID))
			switch pol {
			case agent.DegradedKeep:
				if !accepted || !configured {
					t.Errorf("keep: the new peer was not taken (status %v, device %v, refusal %+v)", accepted, configured, r)
				}
			case agent.DegradedRefuseNew:
				if accepted || configured || !refused || r.Reason != agent.ReasonLogAlarm {
					t.Errorf("refuse-new: the new peer got through (status %v, device %v) or was refused for another reason (%+v)", accepted, configured, r)
				} else {
					t.Logf("refused: %s", r.Error)
				}
			}
			if _, ok := peerOf(st, f.Peer.Self.DeviceID); !ok {
				t.Error("the peer configured before the alarm was dropped")
			}
			if _, ok := devicePeer(t, f.Victim, f.Peer.Self.WireGuardKey); !ok {
				t.Error("the peer configured before the alarm left the WireGuard device")
			}
		})
	}
	t.Run("split-view-fork-seen-first", func(t *testing.T) {
		// A victim seeds its witness from the checkpoint in its own
		// certificate's inclusion proof, which the CA gave over the pinned
		// TLS: the first checkpoint a coordinator relays is not trusted
		// blindly, and a fork of the size it holds is a split view at once.
		f := newLogFixture(t, logOptions{noPeer: true})
		real := f.CA.Checkpoint()
		cp := f.parse(t, real)
		fork := f.fork(t, cp.Size-1, f.hiddenEntry(t))
		f.relayCheckpoint(t, f.Victim, fork.Checkpoint())
		f.expectLogAlarm(t, cp, "split view")
	})
	t.Run("split-view-at-an-older-size", func(t *testing.T) {
		f, cp := start(t)
		next := f.growLog(t, 2)
		f.relayCheckpoint(t, f.Victim, next)
		fork := f.fork(t, cp.Size-1, f.hiddenEntry(t))
		f.relayCheckpoint(t, f.Victim, fork.Checkpoint())
		f.expectLogAlarm(t, f.parse(t, next), "split view")
	})
	t.Run("inconsistent-larger-tree", func(t *testing.T) {
		// The fork rewrites the last entry the victim holds and goes on;
		// the CA's log has grown as far.
		f, cp := start(t)
		fork := f.fork(t, cp.Size-1, f.hiddenEntry(t), f.hiddenEntry(t), f.hiddenEntry(t))
		f.growLog(t, 2)
		f.relayCheckpoint(t, f.Victim, fork.Checkpoint())
		f.expectLogAlarm(t, cp, "inconsistent")
	})
	t.Run("larger-tree-extending-the-held-one-differently", func(t *testing.T) {
		// The fork keeps every entry the victim holds and appends a hidden
		// certificate where the CA's log has other entries.
		f, cp := start(t)
		fork := f.fork(t, cp.Size, f.hiddenEntry(t), f.hiddenEntry(t))
		f.growLog(t, 2)
		f.relayCheckpoint(t, f.Victim, fork.Checkpoint())
		f.expectLogAlarm(t, cp, "")
	})
	t.Run("fork-beyond-the-log-then-the-log-reaches-its-size", func(t *testing.T) {
		// The CA's log cannot prove anything about the fork's size yet;
		// once its own tree of that size reaches the victim, the two roots
		// for one size are a split view.
		f, cp := start(t)
		fork := f.fork(t, cp.Size, f.hiddenEntry(t), f.hiddenEntry(t))
		st := f.relayCheckpoint(t, f.Victim, fork.Checkpoint())
		if st.Log.Size != cp.Size {
			t.Fatalf("the victim took a checkpoint it could not check: %+v", st.Log)
		}
		f.relayCheckpoint(t, f.Victim, f.growLog(t, 2))
		f.expectLogAlarm(t, cp, "split view")
	})
	t.Run("fork-beyond-the-log-then-the-log-passes-its-size", func(t *testing.T) {
		f, cp := start(t)
		fork := f.fork(t, cp.Size, f.hiddenEntry(t), f.hiddenEntry(t))
		f.relayCheckpoint(t, f.Victim, fork.Checkpoint())
		// The fork stays pending; once the victim advances along the real
		// log past its size, the pending tree is proven against it: a fork.
		next := f.growLog(t, 3)
		f.relayCheckpoint(t, f.Victim, next)
		f.expectLogAlarm(t, f.parse(t, next), "")
	})
	t.Run("fork-at-an-older-unseen-size", func(t *testing.T) {
		// The victim holds size N+2 (and saw N); the fork is a tree of size
		// N+1 that the CA's tree of size N+2 does not extend.
		f, cp := start(t)
		next := f.growLog(t, 2)
		f.relayCheckpoint(t, f.Victim, next)
		fork := f.fork(t, cp.Size, f.hiddenEntry(t))
		// Not dropped as a mere rollback: the victim asks the CA for the
		// consistency proof from the fork's size to the size it holds,
		// which exposes it.
		f.relayCheckpoint(t, f.Victim, fork.Checkpoint())
		f.expectLogAlarm(t, f.parse(t, next), "")
	})

	// A certificate the attacker issued with the real intermediate, hidden
	// from the real log, proven against a fork of the first keep entries
	// and it.
	type hiddenCert struct {
		a    *attacker
		id   certs.DeviceID
		peer wire.Peer
	}
	hiddenPeer := func(t *testing.T, f *logFixture, keep uint64) hiddenCert {
		a := f.newAttacker(t, "hidden")
		prof := f.legitProfile(t, a)
		b, _ := f.PKI.IssueMachine(t, prof)
		fork := f.fork(t, keep, certEntry(b))
		return hiddenCert{a: a, id: prof.DeviceID,
			peer: wire.Peer{Label: "hidden", Bundle: b.Wire(), Endpoints: []netip.AddrPort{a.Endpoint()}, Inclusion: proofIn(t, fork, b)}}
	}
	t.Run("split-view-through-an-inclusion-proof", func(t *testing.T) {
		f, cp := start(t)
		h := hiddenPeer(t, f, cp.Size-1) // the fork has the size the victim holds
		send(t, f.Victim.Conn, upsert(h.peer))
		st := f.syncNode(t, f.Victim)
		refusedNotLogged(t, f.Victim, st, "hidden", h.id, h.a.Pub)
		f.expectLogAlarm(t, cp, "split view")
		mustNotReach(t, f.fixture, h.a)
	})
	t.Run("hidden-certificate-then-the-log-reaches-its-size", func(t *testing.T) {
		// The proof is against a fork of a size the victim has not seen
		// (N+1): the witness cannot tell yet. The CA's own tree of that
		// size, relayed next, is a split view.
		f, cp := start(t)
		h := hiddenPeer(t, f, cp.Size)
		send(t, f.Victim.Conn, upsert(h.peer))
		st := f.syncNode(t, f.Victim)
		if r, ok := rejectionOf(st, "hidden"); ok {
			t.Logf("the victim refused the hidden certificate at once: %s: %s", r.Reason, r.Error)
		} else if _, ok := peerOf(st, h.id); ok {
			t.Logf("the victim accepted the hidden certificate: the witness cannot tell a fork of a size it has not seen yet")
		}
		f.relayCheckpoint(t, f.Victim, f.growLog(t, 1))
		f.expectLogAlarm(t, cp, "split view")
		if _, ok := devicePeer(t, f.Victim, h.a.Pub); ok {
			t.Logf("after the alarm the hidden certificate's key is still a WireGuard peer: the agent raises the alarm but keeps peers proven against the fork")
		}
	})
	t.Run("hidden-certificate-then-the-log-passes-its-size", func(t *testing.T) {
		f, cp := start(t)
		h := hiddenPeer(t, f, cp.Size)
		send(t, f.Victim.Conn, upsert(h.peer))
		st := f.syncNode(t, f.Victim)
		_, refused := rejectionOf(st, "hidden")
		next := f.growLog(t, 2)
		st = f.relayCheckpoint(t, f.Victim, next)
		if st.Log.Alarm == "" {
			_, configured := devicePeer(t, f.Victim, h.a.Pub)
			t.Errorf("no alarm: a certificate the CA's log never held, proven against a forked checkpoint of size %d, "+
				"and the victim advanced from %d to %d along the real log without checking the forked tree "+
				"(refused at once: %v; WireGuard peer: %v); log status %+v", cp.Size+1, cp.Size, cp.Size+2, refused, configured, st.Log)
		}
	})
}
