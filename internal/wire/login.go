package wire

import (
	"time"

	"github.com/certmesh/certmesh/translog"
)

// HTTP paths of the CA's user login (OIDC).
const (
	PathLoginStart    = "/v1/login/start"    // mTLS: begin a login for this device
	PathLoginPoll     = "/v1/login/poll"     // mTLS: wait for its outcome
	PathLoginCallback = "/v1/login/callback" // the provider redirects the browser here
)

// LoginStartRequest begins a user login. CSR is signed by the device key
// of the machine certificate presented over mTLS: the user certificate
// certifies that same key.
type LoginStartRequest struct {
	CSR []byte `json:"csr"`
	// DeviceFlow asks for the device authorization grant (RFC 8628), for
	// a headless node: the user enters a code on another device.
	DeviceFlow bool `json:"device_flow,omitempty"`
}

// LoginStartResponse tells the user where to log in.
type LoginStartResponse struct {
	LoginID string    `json:"login_id"`
	Expires time.Time `json:"expires"`
	// AuthURL is the authorization code flow's URL, to open in a browser.
	AuthURL string `json:"auth_url,omitempty"`
	// Device flow: visit VerificationURI and enter UserCode.
	VerificationURI         string `json:"verification_uri,omitempty"`
	VerificationURIComplete string `json:"verification_uri_complete,omitempty"`
	UserCode                string `json:"user_code,omitempty"`
}

// LoginStatus is where a login stands.
type LoginStatus string

// The login states.
const (
	LoginPending          LoginStatus = "pending"           // waiting for the user
	LoginAwaitingApproval LoginStatus = "awaiting-approval" // waiting for an admin
	LoginDone             LoginStatus = "done"
	LoginFailed           LoginStatus = "failed"
)

// LoginPollRequest asks for a login's outcome.
type LoginPollRequest struct {
	LoginID string `json:"login_id"`
	// Known is the status the client last saw: the CA answers when the
	// status differs from it (or after a while). Empty means pending.
	Known LoginStatus `json:"known,omitempty"`
}

// LoginPollResponse is a login's outcome so far. When Status is done,
// UserCert is the DER user certificate (its chain is the machine
// certificate's).
type LoginPollResponse struct {
	Status   LoginStatus `json:"status"`
	Code     string      `json:"code,omitempty"`
	Message  string      `json:"message,omitempty"`
	UserCert []byte      `json:"user_cert,omitempty"`
	Email    string      `json:"email,omitempty"`
	Groups   []string    `json:"groups,omitempty"`
	NotAfter time.Time   `json:"not_after,omitzero"`
	// UserInclusion proves the user certificate is in the CA's log.
	UserInclusion *translog.InclusionBundle `json:"user_inclusion,omitempty"`
}
