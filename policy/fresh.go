package policy

import (
	"bytes"
	"time"
)

// DefaultValidity is how long a signed policy is current (ValidUntil -
// SignedAt) when the CA's configuration does not say: the CA signs the
// current version again at half of it, so an agent that cannot reach the
// CA or a coordinator that relays it learns within this time that its
// policy may have been replaced.
const DefaultValidity = time.Hour

// checkFresh refuses a document without ValidUntil (the first format) or
// past it.
func checkFresh(d *SignedPolicy, now time.Time) error {
	switch {
	case d.ValidUntil.IsZero():
		return refuse(ReasonPastValidUntil, "version %d has no valid-until (a document of the first format, before freshness)", d.Version)
	case now.After(d.ValidUntil):
		return refuse(ReasonPastValidUntil, "version %d signed at %s was valid until %s", d.Version,
			d.SignedAt.UTC().Format(time.RFC3339), d.ValidUntil.UTC().Format(time.RFC3339))
	}
	return nil
}

// Expired reports whether the document is past its ValidUntil at now (or
// has none).
func (d *SignedPolicy) Expired(now time.Time) bool {
	return d.ValidUntil.IsZero() || now.After(d.ValidUntil)
}

// IsResigning reports whether d is a newer signing of held: the same
// version and policy bytes, signed later. The CA signs its current version
// again before it expires; an agent takes such a document (after Verify
// with current held.Version-1) to extend what it holds.
func IsResigning(held, d *SignedPolicy) bool {
	return held != nil && d != nil && d.Version == held.Version && bytes.Equal(d.Policy, held.Policy) &&
		d.SignedAt.After(held.SignedAt) && d.ValidUntil.After(held.ValidUntil)
}
