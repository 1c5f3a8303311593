package netns

import (
	"context"
	"fmt"
	"time"
)

// WaitFor calls fn every interval until it returns nil or ctx is done. fn is
// always called at least once. When ctx ends first, the returned error wraps
// both ctx.Err() and fn's last error.
func WaitFor(ctx context.Context, interval time.Duration, fn func() error) error {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		timer.Reset(interval)
		select {
		case <-ctx.Done():
			return fmt.Errorf("netns: wait: %w; last error: %w", ctx.Err(), err)
		case <-timer.C:
		}
	}
}
