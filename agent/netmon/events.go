package netmon

import (
	"context"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
)

// resubscribeDelay is how long a monitor waits before subscribing again
// after the kernel ended a subscription (a receive error: the socket
// overflowed).
const resubscribeDelay = time.Second

// subscribe starts forwarding the namespace's address and link events to
// events, as a signal: the addresses are read again after each burst.
func (m *Monitor) subscribe(ctx context.Context, events chan<- struct{}) error {
	onErr := func(err error) { m.cfg.Log.Debug("netmon: netlink", "err", err) }
	if err := watch(ctx, m, events, "address", func(ch chan<- netlink.AddrUpdate, done <-chan struct{}) error {
		return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{Namespace: &m.ns, ErrorCallback: onErr})
	}); err != nil {
		return err
	}
	return watch(ctx, m, events, "link", func(ch chan<- netlink.LinkUpdate, done <-chan struct{}) error {
		return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{Namespace: &m.ns, ErrorCallback: onErr})
	})
}

// watch subscribes once (its error is Start's) and then forwards every
// update as a signal on events until ctx ends. When the kernel ends the
// subscription, it signals (events may have been lost, so the addresses
// must be read again) and subscribes anew.
func watch[T any](ctx context.Context, m *Monitor, events chan<- struct{}, what string, subscribe func(chan<- T, <-chan struct{}) error) error {
	ch, done := make(chan T, 64), make(chan struct{})
	if err := subscribe(ch, done); err != nil {
		return fmt.Errorf("netmon: subscribing to %s events: %w", what, err)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			// Closing done closes the subscription's socket, which ends
			// its reader and closes ch.
			stop := context.AfterFunc(ctx, func() { close(done) })
			for range ch {
				signal(events)
			}
			if !stop() {
				return // ctx ended
			}
			close(done)
			m.cfg.Log.Warn("netmon: the kernel ended the subscription to " + what + " events; subscribing again")
			signal(events)
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(resubscribeDelay):
				}
				ch, done = make(chan T, 64), make(chan struct{})
				err := subscribe(ch, done)
				if err == nil {
					break
				}
				m.cfg.Log.Warn("netmon: subscribing to "+what+" events", "err", err)
			}
			signal(events)
		}
	}()
	return nil
}

// signal notes that something happened, without blocking: one pending
// signal stands for any number.
func signal(events chan<- struct{}) {
	select {
	case events <- struct{}{}:
	default:
	}
}

// loop reads the addresses once events have been quiet for Debounce (or
// after MaxDelay of steady events), and at every recheck, and reports
// what changed, until ctx ends.
func (m *Monitor) loop(ctx context.Context, events <-chan struct{}, recheck <-chan time.Time) {
	defer close(m.changes)
	quiet, deadline := time.NewTimer(time.Hour), time.NewTimer(time.Hour)
	quiet.Stop()
	deadline.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			if !pending {
				pending = true
				deadline.Reset(m.cfg.MaxDelay)
			}
			quiet.Reset(m.cfg.Debounce)
			continue
		case <-quiet.C:
		case <-deadline.C:
		case <-recheck:
		}
		pending = false
		quiet.Stop()
		deadline.Stop()
		m.refresh()
	}
}

// refresh reads the addresses and reports them if they changed.
func (m *Monitor) refresh() {
	st, err := m.read()
	if err != nil {
		m.cfg.Log.Warn("netmon: reading addresses", "err", err)
		return
	}
	m.report(st)
}
