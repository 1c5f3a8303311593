package agent

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// lineLog collects log lines (the loop runs on the test's goroutine).
type lineLog struct{ b strings.Builder }

func (l *lineLog) Write(p []byte) (int, error) { return l.b.Write(p) }

// TestWatchFailingTheSameWayBacksOff: a coordinator whose every watch
// fails the same way after connecting (an event the agent refuses, sent
// again on each watch) gets jittered, growing delays and one log line,
// not a tight reconnect loop that logs on every turn. Fake time
// (testing/synctest): ten minutes pass in no time.
func TestWatchFailingTheSameWayBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &lineLog{}
		c := &coordClient{log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
		var attempts []time.Time
		c.watchFn = func(ctx context.Context) error {
			attempts = append(attempts, time.Now())
			c.markConnected()
			return errors.New("reading coordinator stream: bufio.Scanner: token too long")
		}
		const period = 10 * time.Minute
		ctx, cancel := context.WithTimeout(t.Context(), period)
		defer cancel()
		c.run(ctx)

		// Delays double from 0.5 s to 30 s, each between half and all of
		// its step: at most 7 ramp steps, then one per 15-30 s.
		if max := 7 + int(period/(watchBackoffMax/2)); len(attempts) > max {
			t.Errorf("%d watches in %s, want at most %d", len(attempts), period, max)
		}
		if len(attempts) < 10 {
			t.Fatalf("only %d watches in %s: the agent gave up reconnecting", len(attempts), period)
		}
		gaps := map[time.Duration]bool{}
		step := watchBackoffMin
		for i := 1; i < len(attempts); i++ {
			gap := attempts[i].Sub(attempts[i-1])
			if gap < step/2 || gap > step {
				t.Errorf("delay %d is %s, want between %s and %s", i, gap, step/2, step)
			}
			if step == watchBackoffMax {
				gaps[gap] = true
			}
			step = min(step*2, watchBackoffMax)
		}
		if len(gaps) < 2 {
			t.Errorf("every delay at the cap is the same (%v): no jitter", gaps)
		}
		out := logs.b.String()
		if n := strings.Count(out, "coordinator connection lost"); n != 1 {
			t.Errorf("the failure was logged %d times, want once:\n%s", n, out)
		}
		if n := strings.Count(out, "connected to coordinator"); n != 1 {
			t.Errorf("connecting was logged %d times, want once:\n%s", n, out)
		}
	})
}

// TestWatchNewFailureIsLogged: a different failure is news and is logged,
// and so is connecting again after the coordinator was unreachable.
func TestWatchNewFailureIsLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &lineLog{}
		c := &coordClient{log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
		errs := []string{"down", "down", "refused event", "refused event", "down"}
		i := 0
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		c.watchFn = func(ctx context.Context) error {
			if i == len(errs) {
				cancel()
				return ctx.Err()
			}
			e := errs[i]
			i++
			if e != "down" {
				c.markConnected()
			}
			return errors.New(e)
		}
		c.run(ctx)
		out := logs.b.String()
		for s, want := range map[string]int{"err=down": 2, `err="refused event"`: 1, "connected to coordinator": 1} {
			if n := strings.Count(out, s); n != want {
				t.Errorf("%q logged %d times, want %d:\n%s", s, n, want, out)
			}
		}
	})
}

// TestWatchHealthyResetsBackoff: a coordinator that was down long enough
// for the backoff to reach its cap comes back, the watch delivers its
// snapshot (healthy) and then the coordinator restarts. The agent must try
// again within watchBackoffMin, not after the grown delay: the time the
// whole mesh waits after a restart is this delay.
func TestWatchHealthyResetsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &coordClient{log: slog.New(slog.DiscardHandler)}
		var attempts []time.Time
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		const down = 10 // failed attempts: the backoff is at its cap
		c.watchFn = func(ctx context.Context) error {
			attempts = append(attempts, time.Now())
			switch n := len(attempts); {
			case n <= down:
				return errors.New("connection refused")
			case n == down+1: // back: the snapshot arrives, the stream lives a while
				c.markConnected()
				c.healthy = time.Now()
				time.Sleep(10 * time.Second)
				return errors.New("coordinator closed the stream")
			default:
				cancel()
				return ctx.Err()
			}
		}
		c.run(ctx)
		if len(attempts) != down+2 {
			t.Fatalf("%d attempts, want %d", len(attempts), down+2)
		}
		if gap := attempts[down+1].Sub(attempts[down]) - 10*time.Second; gap > watchBackoffMin {
			t.Errorf("after a healthy watch ended the agent waited %s to reconnect, want at most %s", gap, watchBackoffMin)
		}
	})
}
