// Package reason is the one implementation of the typed-reason errors of
// the verification packages (certs, policy, translog) and of the CA (ca,
// ca/attest): an error that carries a machine-readable reason, says what
// was wrong, and wraps the cause.
//
// Each package keeps its own Reason type and names its error type as an
// alias of [Error], with its own message:
//
//	type RejectError = reason.Error[Reason, rejectMessage]
//
//	type rejectMessage struct{}
//
//	func (rejectMessage) Format(r string, err error) string { ... }
//
// so its errors are its own type (errors.As finds a certs error, never a
// policy one) and literals such as &RejectError{Reason: r, Err: err}
// keep working.
package reason

import (
	"errors"
	"fmt"
)

// Message formats a package's errors from the reason and the cause. It is
// implemented by a zero-size type of that package.
type Message interface {
	Format(reason string, err error) string
}

// Error is a refusal for reason Reason; Err says what exactly was wrong.
type Error[R ~string, M Message] struct {
	Reason R
	Err    error
}

func (e *Error[R, M]) Error() string {
	var m M
	return m.Format(string(e.Reason), e.Err)
}

// Unwrap returns the cause.
func (e *Error[R, M]) Unwrap() error { return e.Err }

// Is reports whether target is e's reason. It matters to a package whose
// Reason type is itself an error (ca/attest): errors.Is(err, ReasonX)
// then tests the reason of an *Error in err's chain.
func (e *Error[R, M]) Is(target error) bool {
	r, ok := any(target).(R)
	return ok && r == e.Reason
}

// Wrap returns an *Error for r that says what was wrong,
// fmt.Sprintf(format, args...), and wraps the cause err: its message is
// "what: err".
func Wrap[R ~string, M Message](r R, err error, format string, args ...any) *Error[R, M] {
	return &Error[R, M]{Reason: r, Err: fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)}
}

// New returns an *Error for r whose cause is fmt.Errorf(format, args...).
func New[R ~string, M Message](r R, format string, args ...any) error {
	return &Error[R, M]{Reason: r, Err: fmt.Errorf(format, args...)}
}

// Of returns the reason of the first *Error[R, M] in err's chain, and ""
// if there is none.
func Of[R ~string, M Message](err error) R {
	if e, ok := errors.AsType[*Error[R, M]](err); ok {
		return e.Reason
	}
	return ""
}
