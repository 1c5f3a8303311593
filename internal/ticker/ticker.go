// Package ticker runs a function at a fixed period until a context ends:
// the loop of the CA's CRL and policy refreshes and of test clocks.
package ticker

import (
	"context"
	"time"
)

// Run calls fn every period (first after one period) until ctx is done.
func Run(ctx context.Context, period time.Duration, fn func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
