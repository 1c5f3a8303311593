package path

import "time"

// pingReplay refuses a ping from one peer that is stale or that it has
// seen before. A ping carries its sender's clock (milliseconds) and a
// random transaction ID: it is accepted once, only while its clock is
// within window of ours, and never below the floor (the newest ping it had
// to forget to stay within its bound), so a recorded ping cannot be played
// again from another address to make us answer there or probe it.
type pingReplay struct {
	window time.Duration
	max    int
	seen   map[txID]int64 // accepted pings still inside the window: their clock
	floor  int64          // pings at or below it are refused
}

func newPingReplay(window time.Duration, max int) *pingReplay {
	return &pingReplay{window: window, max: max, seen: map[txID]int64{}}
}

// accept reports whether the ping (tx, atMS) is fresh at now, and records it.
func (r *pingReplay) accept(tx txID, atMS int64, now time.Time) bool {
	nowMS := now.UnixMilli()
	w := r.window.Milliseconds()
	if atMS < nowMS-w || atMS > nowMS+w || atMS <= r.floor {
		return false
	}
	if _, dup := r.seen[tx]; dup {
		return false
	}
	for t, at := range r.seen {
		if at < nowMS-w {
			delete(r.seen, t) // the window refuses it now
		}
	}
	for len(r.seen) >= r.max {
		oldest, at := txID{}, int64(1<<63-1)
		for t, a := range r.seen {
			if a < at {
				oldest, at = t, a
			}
		}
		delete(r.seen, oldest)
		r.floor = max(r.floor, at)
		if atMS <= r.floor {
			return false
		}
	}
	r.seen[tx] = atMS
	return true
}
