package testclock_test

import (
	"context"
	"testing"
	"testing/synctest"
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

func TestRunFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c testclock.Clock
		ctx, cancel := context.WithCancel(t.Context())
		go c.RunFast(ctx, 10)
		start := c.Now()
		time.Sleep(525 * time.Millisecond) // ten steps of 50ms
		if got, want := c.Now().Sub(start), 525*time.Millisecond+10*450*time.Millisecond; got != want {
			t.Fatalf("in 525ms the clock ran %s, want %s", got, want)
		}
		cancel()
		synctest.Wait()
		stopped := c.Now()
		time.Sleep(time.Second)
		if got := c.Now().Sub(stopped); got != time.Second {
			t.Fatalf("after ctx is done a second of real time is %s of the clock", got)
		}
	})
}
