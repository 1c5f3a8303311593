// Package backoff is the one retry schedule of the agent: exponential,
// capped, with full jitter, so that agents cut off together (a server
// restart, a partition) do not come back together.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff hands out the waits between attempts. The zero value is not
// usable: set Min and Max. It is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	attempt  int
}

// Next returns how long to wait before the next attempt: a uniformly
// random duration in [c/2, c] where c = min(Min·2^n, Max) and n counts the
// earlier calls since Reset ("equal jitter": spread, but never a tight
// loop of near-zero waits).
func (b *Backoff) Next() time.Duration {
	ceil := b.ceiling()
	if b.attempt < 62 {
		b.attempt++
	}
	lo := ceil / 2
	return lo + rand.N(ceil-lo+1)
}

// ceiling is min(Min·2^attempt, Max) without overflow.
func (b *Backoff) ceiling() time.Duration {
	c := max(b.Min, time.Nanosecond)
	for i := 0; i < b.attempt && c < b.Max; i++ {
		c *= 2
	}
	return min(c, max(b.Max, b.Min))
}

// Reset starts the schedule again from Min (after a success).
func (b *Backoff) Reset() { b.attempt = 0 }

// Attempts is how many waits were handed out since Reset.
func (b *Backoff) Attempts() int { return b.attempt }
