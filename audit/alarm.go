package audit

import (
	"fmt"
)

// AlarmKind names what an alarm is about. docs/auditors.md says what each
// means and what to do.
type AlarmKind string

// The alarms. The first group is about the log itself (its key, its
// checkpoints, its history, its entries); the second about what the CA
// logged; the last about the mesh.
const (
	// AlarmKeyChanged: the log serves another verifier key than the one
	// pinned (on the first run, or with --log-key).
	AlarmKeyChanged AlarmKind = "key-changed"
	// AlarmBadCheckpoint: the newest checkpoint is malformed or not signed
	// by the pinned key.
	AlarmBadCheckpoint AlarmKind = "bad-checkpoint"
	// AlarmRollback: the newest checkpoint is smaller than one seen before.
	AlarmRollback AlarmKind = "rollback"
	// AlarmHistoryRewritten: the newest checkpoint does not extend one
	// seen before (no valid consistency proof, or another root for the
	// same size: a split view). The history was rewritten.
	AlarmHistoryRewritten AlarmKind = "history-rewritten"
	// AlarmEntriesMissing: the log does not serve all the entries its
	// checkpoint commits to.
	AlarmEntriesMissing AlarmKind = "entries-missing"
	// AlarmRootMismatch: the entries the log serves do not hash to the
	// root it signed: an entry was changed, removed, inserted or
	// reordered. The message names the first differing entry when the
	// log's proofs allow it.
	AlarmRootMismatch AlarmKind = "root-mismatch"

	// AlarmMalformedEntry: a logged entry does not decode.
	AlarmMalformedEntry AlarmKind = "malformed-entry"
	// AlarmUntrustedCertificate: a logged certificate does not chain to
	// the root, or breaks the certmesh profile, at its own issuance time.
	AlarmUntrustedCertificate AlarmKind = "untrusted-certificate"
	// AlarmDuplicateSerial: two different logged certificates share a
	// serial number and issuer.
	AlarmDuplicateSerial AlarmKind = "duplicate-serial"
	// AlarmUnknownRevocation: a revocation names a serial no earlier
	// certificate entry has, or another device or user than that
	// certificate's.
	AlarmUnknownRevocation AlarmKind = "unknown-revocation"
	// AlarmPolicyRollback: a policy version not above the one before it.
	AlarmPolicyRollback AlarmKind = "policy-rollback"

	// AlarmNotLogged: a certificate seen in use on the mesh is not in the
	// log.
	AlarmNotLogged AlarmKind = "not-logged"
)

// integrity reports whether the alarm is about the log itself: after one,
// the auditor does not record the newest checkpoint as verified.
func (k AlarmKind) integrity() bool {
	switch k {
	case AlarmKeyChanged, AlarmBadCheckpoint, AlarmRollback, AlarmHistoryRewritten, AlarmEntriesMissing, AlarmRootMismatch:
		return true
	}
	return false
}

// Alarm is one finding that needs a person.
type Alarm struct {
	Kind    AlarmKind `json:"kind"`
	Index   *uint64   `json:"index,omitempty"` // the log entry concerned, if one
	Message string    `json:"message"`
	// Evidence holds signed checkpoints that prove the finding to anyone
	// with the log's verifier key (two notes of the same size for a split
	// view, the earlier and the newest for a rewritten history).
	Evidence []string `json:"evidence,omitempty"`
}

func (a Alarm) String() string {
	if a.Index != nil {
		return fmt.Sprintf("ALARM %s: entry %d: %s", a.Kind, *a.Index, a.Message)
	}
	return fmt.Sprintf("ALARM %s: %s", a.Kind, a.Message)
}

func alarm(kind AlarmKind, format string, args ...any) Alarm {
	return Alarm{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

func entryAlarm(kind AlarmKind, index uint64, format string, args ...any) Alarm {
	return Alarm{Kind: kind, Index: &index, Message: fmt.Sprintf(format, args...)}
}
