package relayc

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// allocate ranks the relays and allocates on the nearest that accepts.
func (c *Client) allocate(ctx context.Context, creds Credentials) (*Allocation, error) {
	ranked, probes := rank(ctx, creds.Servers, c.cfg.TLS, c.cfg.ProbeTimeout, c.cfg.Log)
	c.stMu.Lock()
	c.status.Probes = probes
	now := time.Now()
	slices.SortStableFunc(ranked, func(x, y choice) int {
		return boolInt(now.Before(c.avoid[x.probe.Addr])) - boolInt(now.Before(c.avoid[y.probe.Addr]))
	})
	c.stMu.Unlock()
	errs := []error{errors.New("no relay answered")}
	for _, ch := range ranked {
		a, err := Allocate(ctx, AllocConfig{Transport: ch.probe.Transport, Addr: ch.probe.Addr, TLS: c.cfg.TLS,
			Username: creds.Username, Password: ch.server.Password, Lifetime: c.cfg.Lifetime, Receive: c.receive, Log: c.cfg.Log})
		if err == nil {
			a.credExpires = creds.Expires
			c.stMu.Lock()
			c.status.RTT = ch.probe.RTT
			c.stMu.Unlock()
			return a, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("allocate at a relay: %w", errors.Join(errs...))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// install makes a the allocation in use (nil: none), permits the peers on
// it, reports the change and retires the previous allocation when its
// credentials expire (the relay stops relaying for it then), so datagrams
// peers send to the old address until they learn the new one arrive.
func (c *Client) install(ctx context.Context, a *Allocation) {
	if a != nil {
		pctx, cancel := context.WithTimeout(ctx, requestTimeout)
		c.permMu.Lock()
		addrs := make([]netip.Addr, 0, len(c.permits))
		for ip := range c.permits {
			addrs = append(addrs, ip)
		}
		c.permMu.Unlock()
		if err := a.Permit(pctx, addrs); err != nil {
			c.cfg.Log.Warn("permitting peers on the new relay allocation", "err", err)
		}
		cancel()
	}
	old := c.cur.Swap(a)
	if old == a {
		return
	}
	var relayed netip.AddrPort
	var server string
	c.stMu.Lock()
	if a != nil {
		relayed, server = a.RelayedAddr(), a.cfg.Addr
		c.status.Server, c.status.Transport, c.status.Relayed, c.status.LastError = a.cfg.Addr, a.kind, relayed, ""
		c.status.CredentialsExpire = a.credExpires
	} else {
		c.status.Server, c.status.Transport, c.status.Relayed, c.status.RTT = "", "", netip.AddrPort{}, 0
	}
	c.stMu.Unlock()
	if old != nil {
		d := min(max(old.credExpires.Sub(c.cfg.Now()), 0), maxRetire)
		select {
		case <-old.Done():
			d = 0
		default:
		}
		c.retire(old, d)
	}
	if old == nil && a == nil {
		return
	}
	c.cfg.Log.Info("relay allocation", "relay", server, "relayed", relayed)
	if c.cfg.OnChange != nil {
		c.cfg.OnChange(relayed)
	}
}

// maxRetire bounds how long a replaced allocation keeps receiving (relay
// credentials live at most an hour: relaycred.MaxLifetime).
const maxRetire = time.Hour

// watch pings the relay of a (every ProbeInterval, and at once after
// CheckNow) until it stops answering or sees this agent at another address
// (an error), or the credentials are due for renewal (nil).
func (c *Client) watch(ctx context.Context, a *Allocation, renewAt time.Time) error {
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	lost := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.Done():
			return a.Err()
		case <-t.C:
		case <-c.poke:
		}
		if !c.cfg.Now().Before(renewAt) {
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, c.cfg.ProbeTimeout)
		rtt, mapped, err := a.ping(pctx)
		cancel()
		if err == nil && a.mapped.IsValid() && mapped != a.mapped {
			// The relay sees us from another address (a new network, a NAT
			// that dropped its mapping): the allocation belongs to the old
			// one, and nothing we send now reaches it.
			err = fmt.Errorf("relay %s now sees this agent at %s, not %s: the allocation is lost", a.server, mapped, a.mapped)
			a.fail(err)
			return err
		}
		if err == nil {
			lost = 0
			c.stMu.Lock()
			c.status.RTT = rtt
			c.stMu.Unlock()
			continue
		}
		if lost++; lost >= c.cfg.ProbeFailures {
			err = fmt.Errorf("relay %s stopped answering (%d pings lost): %w", a.server, lost, err)
			a.fail(err)
			return err
		}
	}
}

func (c *Client) failed(err error) {
	c.cfg.Log.Warn("relay", "err", err)
	c.stMu.Lock()
	c.status.LastError = err.Error()
	c.stMu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// retire closes a replaced allocation after d (at once when Run ends).
func (c *Client) retire(old *Allocation, d time.Duration) {
	c.stMu.Lock()
	defer c.stMu.Unlock()
	c.retiring[old] = time.AfterFunc(d, func() {
		_ = old.Close()
		c.stMu.Lock()
		delete(c.retiring, old)
		c.stMu.Unlock()
	})
}

// closeAll closes the allocation in use and every retiring one.
func (c *Client) closeAll() {
	if a := c.cur.Swap(nil); a != nil {
		_ = a.Close()
	}
	c.stMu.Lock()
	old := c.retiring
	c.retiring = map[*Allocation]*time.Timer{}
	c.stMu.Unlock()
	for a, t := range old {
		t.Stop()
		_ = a.Close()
	}
}
