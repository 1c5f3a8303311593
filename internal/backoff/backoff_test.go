package backoff

import (
	"testing"
	"time"
)

func TestNextGrowsCapsAndJitters(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 3 * time.Second}
	ceil := b.Min
	for i := range 20 {
		d := b.Next()
		lo := ceil / 2
		if d < lo || d > ceil {
			t.Fatalf("attempt %d: wait %s outside [%s, %s]", i, d, lo, ceil)
		}
		ceil = min(ceil*2, b.Max)
	}
	if b.Attempts() != 20 {
		t.Fatalf("attempts = %d", b.Attempts())
	}
	b.Reset()
	if d := b.Next(); d < b.Min/2 || d > b.Min {
		t.Fatalf("after reset: %s, want within [%s, %s]", d, b.Min/2, b.Min)
	}
}

// Jitter: many agents failing at once must not retry at once.
func TestNextSpreadsAgents(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		b := Backoff{Min: time.Second, Max: time.Minute}
		for range 5 {
			b.Next()
		}
		seen[b.Next()] = true
	}
	if len(seen) < 40 {
		t.Fatalf("50 agents drew only %d distinct waits at the same attempt", len(seen))
	}
}

func TestNextNeverOverflows(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 24 * time.Hour}
	for range 200 {
		if d := b.Next(); d <= 0 || d > b.Max {
			t.Fatalf("wait %s", d)
		}
	}
}
