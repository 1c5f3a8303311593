package translog

import (
	"errors"
	"fmt"

	"github.com/certmesh/certmesh/internal/reason"
)

// Reason says why a checkpoint, proof, entry or request was refused.
type Reason string

// The reasons this package refuses something for.
const (
	ReasonMalformedCheckpoint  Reason = "malformed-checkpoint" // not a C2SP checkpoint note
	ReasonBadSignature         Reason = "bad-signature"        // not validly signed by the log's key
	ReasonWrongOrigin          Reason = "wrong-origin"         // another log's checkpoint
	ReasonMalformedProof       Reason = "malformed-proof"      // a proof hash is not 32 bytes, or too many
	ReasonBadInclusionProof    Reason = "bad-inclusion-proof"  // the entry is not at that index of that tree
	ReasonInconsistent         Reason = "inconsistent"         // the newer tree does not extend the older one
	ReasonRollback             Reason = "rollback"             // a smaller tree than one already verified
	ReasonSplitView            Reason = "split-view"           // two roots for the same tree size (SplitViewError)
	ReasonMalformedEntry       Reason = "malformed-entry"      // a leaf or entry that does not decode or validate
	ReasonOutOfRange           Reason = "out-of-range"         // index or size beyond the tree
	ReasonMalformedBundle      Reason = "malformed-bundle"     // an inclusion bundle that does not fit its checkpoint
	ReasonMalformedWitnessFile Reason = "malformed-witness"    // a saved witness state that does not restore
	ReasonServer               Reason = "server"               // the log server failed (storage, signing)
)

// Error is the typed error of this package: its Reason, and Err, what
// exactly was wrong ("transparency log: reason: err").
type Error = reason.Error[Reason, errorMessage]

type errorMessage struct{}

func (errorMessage) Format(r string, err error) string {
	return fmt.Sprintf("transparency log: %s: %v", r, err)
}

// ReasonOf returns the reason of an error of this package ("" if none).
// A *SplitViewError is ReasonSplitView.
func ReasonOf(err error) Reason {
	if _, ok := errors.AsType[*SplitViewError](err); ok {
		return ReasonSplitView
	}
	return reason.Of[Reason, errorMessage](err)
}

func fail(r Reason, format string, args ...any) error {
	return reason.New[Reason, errorMessage](r, format, args...)
}

// SplitViewError reports two validly signed checkpoints of the same log
// with the same tree size and different roots: the log showed different
// histories to different parties (or rewrote its own). The two signed
// notes, when known, are the evidence: anyone with the verifier key can
// check both signatures. It is an alarm, never a transient error.
type SplitViewError struct {
	Origin string
	Size   uint64
	Roots  [2]Hash   // the root seen first, then the other
	Notes  [2][]byte // the signed checkpoints, in the same order (nil if not kept)
}

func (e *SplitViewError) Error() string {
	return fmt.Sprintf("transparency log %s: split view: two checkpoints of size %d with different roots %s and %s", e.Origin, e.Size, e.Roots[0], e.Roots[1])
}
