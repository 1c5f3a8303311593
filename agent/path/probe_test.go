package path

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
)

func genKey(t *testing.T) wgdev.PrivateKey {
	t.Helper()
	k, err := wgdev.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPairKeysMatchOnlyBetweenThePair(t *testing.T) {
	a, b, c := genKey(t), genKey(t), genKey(t)
	ab, err := derivePairKeys(a, b.Public())
	if err != nil {
		t.Fatal(err)
	}
	ba, err := derivePairKeys(b, a.Public())
	if err != nil {
		t.Fatal(err)
	}
	if ab.sendMAC != ba.recvMAC || ab.recvMAC != ba.sendMAC || ab.sendID != ba.recvID || ab.recvID != ba.sendID {
		t.Fatal("the two sides derive different keys")
	}
	if ab.sendMAC == ab.recvMAC || ab.sendID == ab.recvID {
		t.Fatal("both directions share a key: a probe reflected to its sender would verify")
	}
	cb, err := derivePairKeys(c, b.Public())
	if err != nil {
		t.Fatal(err)
	}
	if cb.sendMAC == ab.sendMAC || cb.sendID == ab.sendID {
		t.Fatal("another key derives the pair's key")
	}
	if _, err := derivePairKeys(a, certs.WireGuardKey{}); err == nil {
		t.Fatal("a low-order peer key (all-zero shared secret) was accepted")
	}
	if _, err := derivePairKeys(a, a.Public()); err == nil {
		t.Fatal("our own key was accepted as a peer's")
	}
	ping := probe{kind: kindPing, id: ab.sendID, atMS: 7}.marshal(&ab.sendMAC)
	if !verifyMAC(&ba.recvMAC, ping) || verifyMAC(&ab.recvMAC, ping) {
		t.Fatal("a ping verifies for the wrong direction, or not for the right one")
	}
}

func TestPingReplayWindow(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := newPingReplay(time.Minute, 4)
	ms := now.UnixMilli()
	tx := func(i byte) txID { return txID{i} }
	if !r.accept(tx(1), ms, now) || r.accept(tx(1), ms, now) {
		t.Fatal("a ping is not accepted exactly once")
	}
	if r.accept(tx(2), ms-61_000, now) || r.accept(tx(3), ms+61_000, now) {
		t.Fatal("a ping outside the clock window was accepted")
	}
	for i := range byte(4) {
		if !r.accept(tx(10+i), ms+int64(i)+1, now) {
			t.Fatalf("fresh ping %d refused", i)
		}
	}
	// Full: the oldest (tx 1 at ms) was forgotten, and the floor rose.
	if r.accept(tx(1), ms, now) {
		t.Fatal("a forgotten ping was accepted again")
	}
	if len(r.seen) > 4 {
		t.Fatalf("%d pings remembered, bound 4", len(r.seen))
	}
}

// TestReplayedPingIsNotAnswered: A's pings to B, recorded and played to B
// again from another address, get no pong there.
func TestReplayedPingIsNotAnswered(t *testing.T) {
	r := newAttackRig(t)
	var answered atomic.Int64
	r.onPongFromB(func([]byte) { answered.Add(1) })
	pings, _ := r.b.filter.recorded()
	if len(pings) == 0 {
		t.Fatal("no ping recorded")
	}
	for _, p := range pings {
		r.z.WriteToUDPAddrPort(p, r.b.addr())
	}
	waitFor(t, 5*time.Second, "B to take every replay", func() bool {
		return r.b.mgr.ProbeCounters().Replayed+uint64(answered.Load()) >= uint64(len(pings))
	})
	if n := answered.Load(); n != 0 {
		t.Fatalf("B answered %d of %d replayed pings at the replaying address", n, len(pings))
	}
}
