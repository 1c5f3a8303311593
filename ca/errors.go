package ca

import (
	"fmt"
	"net/http"

	"github.com/certmesh/certmesh/internal/reason"
)

// Code classifies why the CA refused a request.
type Code string

// The refusal codes, returned to clients in wire.Error.Code.
const (
	CodeBadRequest     Code = "bad-request"
	CodeBadCSR         Code = "bad-csr"
	CodeBadProof       Code = "bad-proof"
	CodeBadNonce       Code = "bad-nonce"
	CodeBadToken       Code = "bad-token"
	CodeTokenUsed      Code = "token-used"
	CodeTokenExpired   Code = "token-expired"
	CodeTokenRevoked   Code = "token-revoked" // an admin revoked the unused token
	CodeKeyInUse       Code = "key-in-use"
	CodeForbidden      Code = "forbidden"
	CodeNotFound       Code = "not-found"
	CodeExhausted      Code = "addresses-exhausted"
	CodeInternal       Code = "internal"
	CodeDenied         Code = "denied"          // an admin denied the enrollment
	CodeBadAttestation Code = "bad-attestation" // TPM evidence refused
	CodeRateLimited    Code = "rate-limited"    // too many requests: retry after Retry-After
	CodeCatchingUp     Code = "catching-up"     // restored from a backup: issues nothing until caught up (restore.go)

	// Login (OIDC) refusals.
	CodeLoginDisabled  Code = "login-disabled"   // no identity provider configured
	CodeIdPUnavailable Code = "idp-unavailable"  // the provider cannot be reached
	CodeBadIDToken     Code = "bad-id-token"     // the ID token failed a check
	CodeLoginRefused   Code = "login-refused"    // a verified user who may not log in
	CodeLoginPending   Code = "approval-pending" // waiting for an admin
	CodeLoginExpired   Code = "login-expired"    // the login session timed out
)

// Error is a refusal: its Code (the Reason field), returned to clients in
// wire.Error.Code, and Err, what was wrong, wrapping the cause if any.
// Its message is Err's.
type Error = reason.Error[Code, errorMessage]

type errorMessage struct{}

func (errorMessage) Format(_ string, err error) string { return err.Error() }

func refuse(code Code, format string, args ...any) *Error {
	return &Error{Reason: code, Err: fmt.Errorf(format, args...)}
}

// refuseErr is refuse for a refusal caused by err: "what: err".
func refuseErr(code Code, err error, format string, args ...any) *Error {
	return reason.Wrap[Code, errorMessage](code, err, format, args...)
}

// CodeOf returns the refusal code of err (CodeInternal if it has none).
func CodeOf(err error) Code {
	if c := reason.Of[Code, errorMessage](err); c != "" {
		return c
	}
	return CodeInternal
}

func httpStatus(c Code) int {
	switch c {
	case CodeBadAttestation, CodeDenied, CodeForbidden, CodeTokenUsed, CodeTokenExpired, CodeTokenRevoked, CodeBadToken, CodeLoginRefused, CodeBadIDToken:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeKeyInUse:
		return http.StatusConflict
	case CodeIdPUnavailable:
		return http.StatusBadGateway
	case CodeLoginDisabled:
		return http.StatusNotImplemented
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodeCatchingUp:
		return http.StatusServiceUnavailable
	case CodeInternal, CodeExhausted:
		return http.StatusInternalServerError
	default:
		return http.StatusBadRequest
	}
}
