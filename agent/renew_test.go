package agent

import (
	"testing"
	"time"
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
