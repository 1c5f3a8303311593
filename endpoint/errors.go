package endpoint

import (
	"fmt"

	"github.com/certmesh/certmesh/internal/reason"
)

// Reason says why an advertisement was refused. Agents count it in status
// like the other refusals.
type Reason string

// The reasons Parse and Verify refuse an advertisement for.
const (
	ReasonUnsigned       Reason = "unsigned"            // no advertisement, or no signature on it
	ReasonMalformed      Reason = "malformed"           // does not decode as version 1
	ReasonTooMany        Reason = "too-many-candidates" // more than MaxCandidates
	ReasonBadSignature   Reason = "bad-signature"       // not signed by the certificate's device key
	ReasonWrongDevice    Reason = "wrong-device"        // names another device than the certificate
	ReasonWrongKey       Reason = "wrong-wireguard-key" // names another WireGuard key than the certificate
	ReasonStale          Reason = "stale"               // issued more than MaxAge ago
	ReasonFuture         Reason = "future"              // issued more than MaxSkew ahead of our clock
	ReasonReplayed       Reason = "replayed"            // sequence number not above the last accepted
	ReasonInvalidAddress Reason = "invalid-address"     // a candidate no one can be reached at, or listed twice
)

// Error is the typed error of this package: its Reason, and Err, what
// exactly was wrong ("endpoint advertisement refused (reason): err").
type Error = reason.Error[Reason, errorMessage]

type errorMessage struct{}

func (errorMessage) Format(r string, err error) string {
	return fmt.Sprintf("endpoint advertisement refused (%s): %v", r, err)
}

// ReasonOf returns the reason of an error of this package ("" if none).
func ReasonOf(err error) Reason { return reason.Of[Reason, errorMessage](err) }

func refuse(r Reason, format string, args ...any) error {
	return reason.New[Reason, errorMessage](r, format, args...)
}
