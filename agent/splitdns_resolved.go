package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/godbus/dbus/v5"
)

// systemd-resolved's D-Bus interface (org.freedesktop.resolve1(5)).
const (
	resolvedName    = "org.freedesktop.resolve1"
	resolvedPath    = "/org/freedesktop/resolve1"
	resolvedManager = "org.freedesktop.resolve1.Manager"
)

// resolvedDNS is a DNS server as SetLinkDNS takes it: (iay).
type resolvedDNS struct {
	Family  int32 // AF_INET 2, AF_INET6 10
	Address []byte
}

// resolvedDomain is a search or routing domain as SetLinkDomains takes it:
// (sb).
type resolvedDomain struct {
	Domain      string
	RoutingOnly bool
}

// resolved is systemd-resolved on the system bus (or at address).
type resolved struct {
	conn *dbus.Conn
	obj  dbus.BusObject
}

// dialResolved connects to the system bus (address "" : the default, which
// DBUS_SYSTEM_BUS_ADDRESS overrides) and checks that resolved is on it.
func dialResolved(ctx context.Context, address string) (*resolved, error) {
	// The connection is made without dbus.WithContext, which would close
	// it with ctx: it must outlive Run's context to revert the link when
	// the agent stops. A bus that does not answer is given up on at ctx's
	// end (the dial goroutine then closes what it got).
	type dialed struct {
		conn *dbus.Conn
		err  error
	}
	ch := make(chan dialed, 1)
	go func() {
		var d dialed
		if address == "" {
			d.conn, d.err = dbus.ConnectSystemBus()
		} else {
			d.conn, d.err = dbus.Connect(address)
		}
		ch <- d
	}()
	var d dialed
	select {
	case d = <-ch:
	case <-ctx.Done():
		go func() {
			if d := <-ch; d.conn != nil {
				d.conn.Close()
			}
		}()
		d.err = ctx.Err()
	}
	if d.err != nil {
		return nil, fmt.Errorf("systemd-resolved: connecting to the system bus: %w", d.err)
	}
	conn := d.conn
	var owned bool
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, resolvedName).Store(&owned); err != nil || !owned {
		conn.Close()
		if err == nil {
			err = errors.New("not running (no " + resolvedName + " on the system bus)")
		}
		return nil, fmt.Errorf("systemd-resolved: %w", err)
	}
	return &resolved{conn: conn, obj: conn.Object(resolvedName, resolvedPath)}, nil
}

func (r *resolved) call(ctx context.Context, method string, args ...any) error {
	if err := r.obj.CallWithContext(ctx, resolvedManager+"."+method, 0, args...).Err; err != nil {
		return fmt.Errorf("systemd-resolved %s: %w", method, err)
	}
	return nil
}

func (r *resolved) set(ctx context.Context, ifindex int, server netip.Addr, domain string) error {
	family := int32(2)
	if server.Is6() {
		family = 10
	}
	idx := int32(ifindex)
	// Drop what a crashed run left first, then set ours: DNS server,
	// routing-only domain, and not the default route (resolved would
	// otherwise send other names here too when no other link claims them).
	if err := r.revert(ctx, ifindex); err != nil {
		return err
	}
	if err := r.call(ctx, "SetLinkDNS", idx, []resolvedDNS{{family, server.AsSlice()}}); err != nil {
		return err
	}
	if err := r.call(ctx, "SetLinkDomains", idx, []resolvedDomain{{domain, true}}); err != nil {
		return errors.Join(err, r.revert(ctx, ifindex))
	}
	if err := r.call(ctx, "SetLinkDefaultRoute", idx, false); err != nil {
		var de dbus.Error
		if !errors.As(err, &de) || de.Name != "org.freedesktop.DBus.Error.UnknownMethod" { // before systemd 246: routing-only suffices
			return errors.Join(err, r.revert(ctx, ifindex))
		}
	}
	return nil
}

func (r *resolved) revert(ctx context.Context, ifindex int) error {
	return r.call(ctx, "RevertLink", int32(ifindex))
}

func (r *resolved) close() error { return r.conn.Close() }
