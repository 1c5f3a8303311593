package coord

import "testing"

// TestShutdownLeavesUnannounced: after Shutdown, members that leave (their
// handlers return one by one as the streams end) are not announced to the
// members still queued: with HTTP streams ending in any order, a removal
// queued for a member whose stream is still being written would reach
// that agent.
func TestShutdownLeavesUnannounced(t *testing.T) {
	m := newMesh(t, 3, 8)
	m.s.Shutdown()
	for _, mb := range m.members {
		select {
		case <-mb.done:
		default:
			t.Fatalf("member %s still open after Shutdown", mb.id)
		}
	}
	for _, mb := range m.members {
		m.s.leave(mb)
	}
	m.s.leave(m.s.peers[m.changer])
	if n := m.drain(); n != 0 {
		t.Errorf("%d events queued for members as they left at shutdown, want none", n)
	}
}
