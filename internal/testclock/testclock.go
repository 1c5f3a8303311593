// Package testclock is the one clock tests inject where real I/O (sockets,
// TLS handshakes, WireGuard devices) keeps a test out of a testing/synctest
// bubble: an agent's Config.Now, the CA's ca.Options.Now, the server's
// server.Options.Now. A test moves it forward to make a certificate, CRL or
// policy expire at once instead of sleeping until it does; timers and
// deadlines on real time keep working. Where nothing does real I/O, use
// testing/synctest instead. It imports nothing of certmesh.
package testclock

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/certmesh/certmesh/internal/ticker"
)

// Clock reads real time (or, made by At, a fixed time) plus an offset the
// test sets or moves forward. Its zero value is real time; it is safe for
// concurrent use.
type Clock struct {
	base time.Time // zero: real time
	off  atomic.Int64
}

// At is a clock that stands still at t until the test moves it: for code
// that only reads the time it is given (no real timers wait on it).
func At(t time.Time) *Clock { return &Clock{base: t} }

// Offset is a real clock d ahead (behind, if d is negative).
func Offset(d time.Duration) *Clock {
	c := &Clock{}
	c.Set(d)
	return c
}

// Now is the clock's time.
func (c *Clock) Now() time.Time { return c.at(c.off.Load()) }

func (c *Clock) at(off int64) time.Time {
	base := c.base
	if base.IsZero() {
		base = time.Now()
	}
	return base.Add(time.Duration(off))
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// AdvanceTo moves the clock forward, if need be, so that it reads at least
// t; it never moves it back.
func (c *Clock) AdvanceTo(t time.Time) {
	for {
		off := c.off.Load()
		d := t.Sub(c.at(off))
		if d <= 0 || c.off.CompareAndSwap(off, off+int64(d)) {
			return
		}
	}
}

// Set makes the clock read its base plus off: a clock off (or back) by a
// fixed amount.
func (c *Clock) Set(off time.Duration) { c.off.Store(int64(off)) }

// runStep is how often RunFast moves the clock.
const runStep = 50 * time.Millisecond

// RunFast makes the clock run factor times as fast as real time until ctx
// is done: every 50 ms of real time it moves forward by (factor-1) × 50 ms.
// It is for a test of routine, time-driven work (renewals every few
// minutes) that must run on the real I/O path and cannot wait that long.
func (c *Clock) RunFast(ctx context.Context, factor int) {
	ticker.Run(ctx, runStep, func() { c.Advance(time.Duration(factor-1) * runStep) })
}
