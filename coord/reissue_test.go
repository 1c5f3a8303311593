package coord

import (
	"testing"

	"github.com/certmesh/certmesh/internal/wire"
)

// TestReissueReachesOnlyItsDevice: the re-issue signal is queued to the
// device an approval concerns and to no other member; a device that is
// not watching is no error.
func TestReissueReachesOnlyItsDevice(t *testing.T) {
	m := newMesh(t, 20, 4)
	target := m.members[7]
	m.s.Reissue(target.id)
	enc := <-target.events
	if e, err := wire.DecodeEvent(enc[:len(enc)-1]); err != nil || e.Type != wire.EventReissue {
		t.Fatalf("queued %v %v, want a reissue event", e, err)
	}
	if n := m.drain() + len(m.s.peers[m.changer].events); n != 0 {
		t.Fatalf("%d events reached other members", n)
	}
	m.s.Reissue("notwatching0000000")
	if n := m.drain(); n != 0 {
		t.Fatalf("a signal for an absent device reached %d members", n)
	}
}
