package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// A renewal attempt may not eat the renewal margin: on a dead connection
// (a partition) it is cut after a tenth of the margin, at most 30 s, and
// failed attempts are retried several times before expiry.
func TestRenewalAttemptsFitTheMargin(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		life, want time.Duration
	}{
		{24 * time.Hour, renewCallMax},       // margin 8 h: the cap
		{2 * time.Minute, 6 * time.Second},   // margin 1 min (with the 1 min backdating): a tenth
		{30 * time.Second, renewCallMin},     // shorter than the CA issues: the floor
		{30 * 24 * time.Hour, renewCallMax},  // the longest
		{10 * time.Minute, 22 * time.Second}, // margin 3 min 40 s
	} {
		nb := now.Add(-time.Minute) // the CA backdates by a minute
		if got := renewTimeout(nb, now.Add(tc.life)); got.Round(time.Second) != tc.want {
			t.Errorf("life %s: attempt timeout %s, want %s", tc.life, got, tc.want)
		}
	}
	// A retry never waits past a quarter of the time left, and never
	// spins.
	if got := renewRetry(5*time.Minute, 40*time.Second); got != 10*time.Second {
		t.Errorf("retry with 40 s left: %s, want 10 s", got)
	}
	if got := renewRetry(5*time.Minute, -time.Hour); got != 5*time.Minute {
		t.Errorf("retry after expiry: %s, want the backoff's 5 min", got)
	}
	if got := renewRetry(0, time.Millisecond); got < renewRetryMin/2 {
		t.Errorf("retry with 1 ms left: %s, want at least %s", got, renewRetryMin/2)
	}
}

// Two agents enrolled at the same instant (certificates with the same
// validity) do not renew at the same instant: each renews at its own point
// between 7/12 and 2/3 of the life, the same point on every turn of the
// renewal loop.
func TestRenewalsOfAFleetAreSpread(t *testing.T) {
	nb := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	life := 24 * time.Hour
	lo, hi := nb.Add(life*7/12), nb.Add(life*2/3)
	seen := map[time.Time]bool{}
	var first, last time.Time
	for i := range 100 {
		id := certs.Identity{Serial: fmt.Sprintf("%x", 1000+i), DeviceID: certs.DeviceID(fmt.Sprintf("d-%d", i)), NotBefore: nb, NotAfter: nb.Add(life)}
		due := renewDue(id)
		if due.Before(lo) || due.After(hi) {
			t.Fatalf("agent %d renews at %s, outside [%s, %s]", i, due, lo, hi)
		}
		if renewDue(id) != due {
			t.Fatalf("agent %d: the renewal time moved between two turns", i)
		}
		if seen[due] {
			t.Fatalf("agent %d renews at %s like another agent enrolled at the same instant", i, due)
		}
		seen[due] = true
		if first.IsZero() || due.Before(first) {
			first = due
		}
		if due.After(last) {
			last = due
		}
	}
	if spread := last.Sub(first); spread < life/12/2 {
		t.Errorf("100 agents enrolled at once renew within %s of each other, want them spread over most of %s", spread, life/12)
	}
}
