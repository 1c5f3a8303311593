package hostile_test

import (
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/wire"
)

// TestForgedReissueCannotLoopRenewals: the coordinator floods the victim
// with reissue signals (they carry nothing and anyone on the coordinator
// can send one). The agent renews on the first, but each signal that
// changed nothing doubles the gap to the next: over the flood it renews a
// handful of times, not once per signal (red before: with no rate limit it
// renewed back to back).
func TestForgedReissueCannotLoopRenewals(t *testing.T) {
	f := newFixture(t)
	v := f.Victim
	// Each renewal publishes the new certificate (on a publish or a new
	// watch): count the distinct certificates the victim published.
	renewals := func() int {
		certs := map[string]bool{}
		for _, p := range f.Coord.Published() {
			if p.DeviceID == v.Self.DeviceID && len(p.Publish.Bundle.Machine) > 0 {
				certs[string(p.Publish.Bundle.Machine)] = true
			}
		}
		return len(certs) - 1
	}
	before := renewals()
	const flood = 10 * time.Second
	end := time.Now().Add(flood)
	sent := 0
	conn := v.Conn
	for time.Now().Before(end) {
		if err := conn.Send(&wire.Event{Type: wire.EventReissue}); err != nil {
			// A renewal moves the agent to a new watch: flood that one.
			if conn, err = f.Coord.WaitForAgent(t.Context(), v.Self.DeviceID); err != nil {
				t.Fatal(err)
			}
			continue
		}
		sent++
		time.Sleep(20 * time.Millisecond)
	}
	// 2 s, then 4 s, then 8 s between renewals: at most 3 start within the
	// flood, one more may be under way.
	got := renewals() - before
	if got > 4 {
		t.Fatalf("%d reissue signals in %s made the agent renew %d times", sent, flood, got)
	}
	if got < 1 {
		t.Fatalf("the agent did not renew on the reissue signal at all (positive control)")
	}
	t.Logf("%d reissue signals in %s: %d renewals", sent, flood, got)
}
