package netmon

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeAddrs is what a test's read returns, and how often it was read.
type fakeAddrs struct {
	mu    sync.Mutex
	st    State
	reads int
}

func (f *fakeAddrs) read() (State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return slices.Clone(f.st), nil
}

func (f *fakeAddrs) set(addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = nil
	for _, a := range addrs {
		f.st = append(f.st, Addr{Link: "eth0", Prefix: netip.MustParsePrefix(a)})
	}
}

func (f *fakeAddrs) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// TestLoopDebounces: a burst of events is one read, after Debounce of
// quiet; a steady stream is read every MaxDelay; a re-read that finds
// nothing new delivers nothing; the periodic re-check finds a change no
// event announced.
func TestLoopDebounces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Debounce: 250 * time.Millisecond, MaxDelay: 2 * time.Second}
		cfg.defaults()
		m := newMonitor(cfg)
		f := &fakeAddrs{}
		m.read = f.read
		events, recheck := make(chan struct{}, 1), make(chan time.Time)
		ctx, cancel := context.WithCancel(t.Context())
		stopped := make(chan struct{})
		go func() { m.loop(ctx, events, recheck); close(stopped) }()

		wantReads := func(n int) {
			t.Helper()
			synctest.Wait()
			if got := f.count(); got != n {
				t.Fatalf("%d reads, want %d", got, n)
			}
		}
		wantDelivered := func(want State) {
			t.Helper()
			synctest.Wait()
			select {
			case got := <-m.Changes():
				if !slices.Equal(got, want) {
					t.Fatalf("delivered %v, want %v", got, want)
				}
			default:
				t.Fatalf("nothing delivered, want %v", want)
			}
		}
		wantNothing := func() {
			t.Helper()
			synctest.Wait()
			select {
			case got := <-m.Changes():
				t.Fatalf("delivered %v, want nothing", got)
			default:
			}
		}

		// A burst of ten events, 100ms apart: no read until it is over.
		for i := range 10 {
			f.set("192.0.2." + string(rune('1'+i%9)) + "/24")
			signal(events)
			time.Sleep(100 * time.Millisecond)
			wantReads(0)
		}
		time.Sleep(cfg.Debounce)
		wantReads(1)
		wantDelivered(f.st)

		// The same addresses again: read, nothing delivered.
		signal(events)
		time.Sleep(cfg.Debounce)
		wantReads(2)
		wantNothing()

		// Events every 200ms for 5s: read every MaxDelay, not never.
		for range 25 {
			signal(events)
			time.Sleep(200 * time.Millisecond)
		}
		wantReads(4)

		// A change no event announced: the re-check finds it.
		f.set("198.51.100.1/24")
		recheck <- time.Now()
		wantReads(5)
		wantDelivered(f.st)

		// A consumer that does not keep up gets the newest state.
		f.set("198.51.100.2/24")
		recheck <- time.Now()
		f.set("198.51.100.3/24")
		recheck <- time.Now()
		wantDelivered(f.st)
		wantNothing()

		cancel()
		<-stopped
		if _, open := <-m.Changes(); open {
			t.Fatal("Changes still open after the monitor stopped")
		}
	})
}
