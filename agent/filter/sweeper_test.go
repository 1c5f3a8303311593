package filter

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestSweeperOnRealClock: with the defaults (the real monotonic clock, a
// background sweep every DefaultSweepInterval) the sweeper alone removes
// an idle flow once its timeout has passed, with no packet looking it up,
// and not before; then the flow's reply is decided as new. It runs in a
// testing/synctest bubble: the minutes pass at once.
func TestSweeperOnRealClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &harness{t: t, tun: newFakeTUN()}
		h.dev = Wrap(h.tun, Config{Decider: denyAll, Peers: peersOf(alice), Local: selfAddrs})
		defer h.dev.Close()
		h.send(udpDgram(self4, alice4, 40000, 53, nil))
		if c := h.dev.Counters(); c.Flows.Active != 1 {
			t.Fatalf("after one datagram out: %+v", c.Flows)
		}

		time.Sleep(DefaultTimeouts.UDP - time.Second)
		synctest.Wait()
		if c := h.dev.Counters(); c.Flows.Active != 1 {
			t.Fatalf("a second before its timeout the flow is gone: %+v", c.Flows)
		}

		time.Sleep(DefaultSweepInterval + 2*time.Second) // past the timeout, and a sweep
		synctest.Wait()
		if c := h.dev.Counters(); c.Flows.Active != 0 {
			t.Fatalf("idle past its timeout and a sweep later, the flow is still held: %+v", c.Flows)
		}
		if h.recv(udpDgram(alice4, self4, 53, 40000, nil)) {
			t.Fatal("a reply to the expired flow was accepted")
		}
	})
}
