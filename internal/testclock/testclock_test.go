package testclock_test

import (
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/testclock"
)

func TestAtStandsStill(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := testclock.At(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("Now = %s, want %s", c.Now(), t0)
	}
	c.Advance(time.Hour)
	if want := t0.Add(time.Hour); !c.Now().Equal(want) {
		t.Fatalf("after Advance: %s, want %s", c.Now(), want)
	}
	c.AdvanceTo(t0) // never back
	if want := t0.Add(time.Hour); !c.Now().Equal(want) {
		t.Fatalf("AdvanceTo moved the clock back to %s", c.Now())
	}
	c.AdvanceTo(t0.Add(3 * time.Hour))
	if want := t0.Add(3 * time.Hour); !c.Now().Equal(want) {
		t.Fatalf("after AdvanceTo: %s, want %s", c.Now(), want)
	}
}

func TestOffsetFollowsRealTime(t *testing.T) {
	c := testclock.Offset(-time.Hour)
	if d := time.Since(c.Now()); d < time.Hour || d > time.Hour+time.Minute {
		t.Fatalf("an hour behind reads %s behind", d)
	}
	c.Set(0)
	target := time.Now().Add(24 * time.Hour)
	c.AdvanceTo(target)
	if c.Now().Before(target) {
		t.Fatalf("after AdvanceTo(%s): %s", target, c.Now())
	}
	var zero testclock.Clock
	if d := time.Since(zero.Now()); d < 0 || d > time.Minute {
		t.Fatalf("the zero clock is %s off real time", d)
	}
}
