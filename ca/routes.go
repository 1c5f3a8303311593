package ca

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
)

// AutoApproval is what one tag pre-approves for the devices carrying it: a
// requested route inside one of Routes (an exit route, 0.0.0.0/0 or ::/0,
// only by itself: listing it pre-approves the exit node, not every subnet),
// and a requested service equal to one of Services ("ssh:22").
type AutoApproval struct {
	Routes   []netip.Prefix `json:"routes,omitempty"`
	Services []string       `json:"services,omitempty"`
}

// validateAutoApprove checks Config.AutoApprove.
func (c *Config) validateAutoApprove() error {
	for tag, a := range c.AutoApprove {
		if _, err := certs.ParseTag(tag); err != nil {
			return fmt.Errorf("auto_approve: %w", err)
		}
		if err := certs.CheckRoutes(a.Routes, c.Overlays()); err != nil {
			return fmt.Errorf("auto_approve %q: %w", tag, err)
		}
		for _, s := range a.Services {
			if _, err := certs.ParseService(s); err != nil {
				return fmt.Errorf("auto_approve %q: %w", tag, err)
			}
		}
	}
	return nil
}

// parseAsks checks what a request asks for: every route canonical and
// outside the overlay, every service valid, within the certificate's
// bounds. A bad entry refuses the whole request.
func (c *CA) parseAsks(a wire.Asks) ([]netip.Prefix, []certs.Service, error) {
	routes, err := parseEach(a.Routes, certs.ParseRoute, func(routes []netip.Prefix) error {
		return certs.CheckRoutes(routes, c.cfg.Overlays())
	}, "requested routes")
	if err != nil {
		return nil, nil, err
	}
	svcs, err := parseEach(a.Services, certs.ParseService, certs.CheckServices, "requested services")
	if err != nil {
		return nil, nil, err
	}
	return nilIfEmpty(routes), nilIfEmpty(svcs), nil
}

// parseEach parses every string of a request's list, then checks the
// whole (check may be nil); a failure refuses the request as bad, about
// what.
func parseEach[T any](in []string, parse func(string) (T, error), check func([]T) error, what string) ([]T, error) {
	out := make([]T, 0, len(in))
	for _, s := range in {
		v, err := parse(s)
		if err != nil {
			return nil, refuseErr(CodeBadRequest, err, "%s", what)
		}
		out = append(out, v)
	}
	if check != nil {
		if err := check(out); err != nil {
			return nil, refuseErr(CodeBadRequest, err, "%s", what)
		}
	}
	return out, nil
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// certified is what dev's next certificate carries: the requested routes
// and services an admin approved or one of its tags pre-approves.
func (c *CA) certified(dev store.Device) ([]netip.Prefix, []certs.Service) {
	var routes []netip.Prefix
	for _, r := range dev.RequestedRoutes {
		if slices.Contains(dev.ApprovedRoutes, r) || c.autoRoute(dev.Tags, r) {
			routes = append(routes, r)
		}
	}
	var svcs []certs.Service
	for _, s := range dev.RequestedServices {
		if slices.Contains(dev.ApprovedServices, s) || c.autoService(dev.Tags, s) {
			svcs = append(svcs, s)
		}
	}
	return routes, svcs
}

func (c *CA) autoRoute(tags []certs.Tag, r netip.Prefix) bool {
	for _, t := range tags {
		for _, a := range c.cfg.AutoApprove[string(t)].Routes {
			if certs.IsExitRoute(a) == certs.IsExitRoute(r) && a.Bits() <= r.Bits() && a.Contains(r.Addr()) {
				return true
			}
		}
	}
	return false
}

func (c *CA) autoService(tags []certs.Tag, s certs.Service) bool {
	for _, t := range tags {
		for _, a := range c.cfg.AutoApprove[string(t)].Services {
			if as, err := certs.ParseService(a); err == nil && as == s {
				return true
			}
		}
	}
	return false
}

// reissueDue says whether dev's current certificate lacks, or carries
// more than, what it would be certified for now.
func (c *CA) reissueDue(dev store.Device) bool {
	routes, svcs := c.certified(dev)
	return !slices.Equal(routes, dev.Routes) || !slices.Equal(svcs, dev.Services)
}

// Approval is an admin's decision on some of a device's routes or
// services (the admin API's body).
type Approval struct {
	Routes   []string `json:"routes,omitempty"`
	Services []string `json:"services,omitempty"`
	Deny     bool     `json:"deny,omitempty"` // withdraw the approval instead
}

// Approve records an admin's approval (or, with a.Deny, its withdrawal)
// of routes and services for device id. An approval may come before the
// device asks; the certificate carries only what is both asked and
// approved. If that changes, the device is marked ReissueDue and the
// OnReissue listeners are told, so that it renews at once.
func (c *CA) ApproveAsks(ctx context.Context, id certs.DeviceID, a Approval) (store.Device, error) {
	routes, svcs, err := c.parseAsks(wire.Asks{Routes: a.Routes, Services: a.Services})
	if err != nil {
		return store.Device{}, err
	}
	if len(routes) == 0 && len(svcs) == 0 {
		return store.Device{}, refuse(CodeBadRequest, "nothing to approve or deny: name routes or services")
	}
	var dev store.Device
	err = c.updateExclusive(ctx, func(tx store.Tx) (err error) {
		dev, err = tx.GetDevice(id)
		if errors.Is(err, store.ErrNotFound) {
			return refuse(CodeNotFound, "no device %s", id)
		} else if err != nil {
			return err
		}
		if dev.State != store.DeviceActive {
			return refuse(CodeBadRequest, "device %s is %s", id, dev.State)
		}
		dev.ApprovedRoutes = edit(dev.ApprovedRoutes, routes, a.Deny)
		dev.ApprovedServices = edit(dev.ApprovedServices, svcs, a.Deny)
		if err := certs.CheckRoutes(dev.ApprovedRoutes, c.cfg.Overlays()); err != nil {
			return refuseErr(CodeBadRequest, err, "approved routes")
		}
		dev.ReissueDue = c.reissueDue(dev)
		return tx.PutDevice(dev)
	})
	if err != nil {
		return store.Device{}, err
	}
	verb := map[bool]string{false: "approved", true: "denied"}[a.Deny]
	c.log.Info("device routes/services "+verb, "device", id, "routes", a.Routes, "services", a.Services, "reissue_due", dev.ReissueDue)
	if dev.ReissueDue {
		c.onReissue.call(id)
	}
	return dev, nil
}

// edit adds items to set (or removes them, with remove), keeping the
// order and no duplicates.
func edit[T comparable](set, items []T, remove bool) []T {
	out := slices.Clone(set)
	for _, it := range items {
		if remove {
			out = slices.DeleteFunc(out, func(x T) bool { return x == it })
		} else if !slices.Contains(out, it) {
			out = append(out, it)
		}
	}
	return nilIfEmpty(out)
}

// Device returns one device.
func (c *CA) Device(ctx context.Context, id certs.DeviceID) (store.Device, error) {
	var dev store.Device
	err := c.store.View(ctx, func(tx store.Tx) (err error) {
		dev, err = tx.GetDevice(id)
		if errors.Is(err, store.ErrNotFound) {
			return refuse(CodeNotFound, "no device %s", id)
		}
		return err
	})
	return dev, err
}

// OnReissue registers a function called when an approval changes what a
// device's certificate must carry (ReissueDue): the server relays it to
// the device, which renews without waiting for its renewal time.
func (c *CA) OnReissue(fn func(certs.DeviceID)) { c.onReissue.add(fn) }
