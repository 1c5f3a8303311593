package ticker

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestRunEveryPeriodUntilDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var n int
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(ctx, time.Minute, func() { n++ })
		}()
		time.Sleep(3*time.Minute + time.Second) // a bubble: fake time
		synctest.Wait()
		if n != 3 {
			t.Fatalf("ran %d times in 3 periods, want 3", n)
		}
		cancel()
		<-done
		time.Sleep(time.Hour)
		if n != 3 {
			t.Fatalf("ran after ctx was done: %d", n)
		}
	})
}
