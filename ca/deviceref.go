package ca

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/translog"
)

// RevokeRequest gives the RFC 5280 reason of a device revocation, by its
// name (keyCompromise for a stolen laptop); empty is cessationOfOperation.
type RevokeRequest struct {
	Reason string `json:"reason,omitempty"`
}

// DeviceRevokeReasons are the reasons `devices revoke --reason` takes:
// the RFC 5280 reasons that say something of a device's certificate
// (not cACompromise, aACompromise, certificateHold or removeFromCRL).
var DeviceRevokeReasons = []translog.RevocationReason{
	translog.ReasonUnspecified, translog.ReasonKeyCompromise, translog.ReasonAffiliationChanged,
	translog.ReasonSuperseded, translog.ReasonCessationOfOperation, translog.ReasonPrivilegeWithdrawn,
}

// deviceRevokeReason parses the reason of a device revocation.
func deviceRevokeReason(name string) (translog.RevocationReason, error) {
	if name == "" {
		return translog.ReasonCessationOfOperation, nil
	}
	names := make([]string, len(DeviceRevokeReasons))
	for i, r := range DeviceRevokeReasons {
		if r.String() == name {
			return r, nil
		}
		names[i] = r.String()
	}
	return 0, refuse(CodeBadRequest, "revocation reason %q: want one of %s", name, strings.Join(names, ", "))
}

// ResolveDevice finds the device ref names: its ID, or its hostname when
// one device has it (of several, the one active device). An ambiguous
// hostname is refused, listing the candidates.
func (c *CA) ResolveDevice(ctx context.Context, ref string) (certs.DeviceID, error) {
	var id certs.DeviceID
	_, idErr := certs.ParseDeviceID(ref)
	if _, err := certs.ParseHostname(ref); err != nil && idErr != nil {
		return "", refuse(CodeBadRequest, "%q is neither a device ID nor a hostname: %v", ref, idErr)
	}
	err := c.store.View(ctx, func(tx store.Tx) error {
		if pid, err := certs.ParseDeviceID(ref); err == nil {
			if _, err := tx.GetDevice(pid); err == nil {
				id = pid
				return nil
			}
		}
		devs, err := tx.ListDevices()
		if err != nil {
			return err
		}
		var named []store.Device
		for _, d := range devs {
			if strings.EqualFold(string(d.Hostname), ref) {
				named = append(named, d)
			}
		}
		d, err := pickOne(named, func(d store.Device) bool { return d.State == store.DeviceActive },
			func(d store.Device) string {
				return fmt.Sprintf("%s (%s, enrolled %s)", d.ID, d.State, d.EnrolledAt.UTC().Format(time.RFC3339))
			}, "device", ref)
		id = d.ID
		return err
	})
	return id, err
}

// pickOne is the one record of named, or of those live says are live;
// none is not-found, several a refusal naming each (by describe).
func pickOne[T any](named []T, live func(T) bool, describe func(T) string, what, ref string) (T, error) {
	var zero T
	if len(named) > 1 {
		var alive []T
		for _, n := range named {
			if live(n) {
				alive = append(alive, n)
			}
		}
		if len(alive) == 1 {
			return alive[0], nil
		}
	}
	switch len(named) {
	case 0:
		return zero, refuse(CodeNotFound, "no %s %s (neither an ID nor a hostname)", what, ref)
	case 1:
		return named[0], nil
	}
	cands := make([]string, len(named))
	for i, n := range named {
		cands[i] = describe(n)
	}
	return zero, refuse(CodeBadRequest, "hostname %q names %d %ss, give the ID: %s", ref, len(named), what, strings.Join(cands, "; "))
}

// waitingByHostname is the waiting enrollment whose hostname is ref, when
// there is exactly one.
func waitingByHostname(tx store.Tx, ref string) (store.PendingEnrollment, error) {
	all, err := tx.ListPending()
	if err != nil {
		return store.PendingEnrollment{}, err
	}
	var named []store.PendingEnrollment
	for _, p := range all {
		if p.State == store.PendingWaiting && strings.EqualFold(string(p.Hostname), ref) {
			named = append(named, p)
		}
	}
	return pickOne(named, func(store.PendingEnrollment) bool { return false },
		func(p store.PendingEnrollment) string {
			return fmt.Sprintf("%s (from %s, requested %s)", p.ID, p.RemoteAddr, p.RequestedAt.UTC().Format(time.RFC3339))
		}, "pending enrollment", ref)
}
