// Package store is the server's storage interface. Every change happens in
// a transaction: it commits whole or not at all, so a failed request leaves
// nothing half-written. The embedded backend (bbolt) needs no setup; the
// interface is shaped so a PostgreSQL backend can implement it too.
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// ErrNotFound is returned for a missing record.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when creating a record whose key is taken.
var ErrExists = errors.New("already exists")

// Store opens transactions.
type Store interface {
	// Update runs fn in a read-write transaction, committed if fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Tx is one transaction.
type Tx interface {
	PutToken(t Token) error
	GetToken(id string) (Token, error)
	// ListTokens returns every enrollment token record, oldest first.
	ListTokens() ([]Token, error)

	// PutNonce stores a fresh nonce; TakeNonce deletes it and returns it,
	// so a nonce is used at most once.
	PutNonce(n Nonce) error
	TakeNonce(value string) (Nonce, error)
	// PurgeNonces deletes nonces that expired before now.
	PurgeNonces(now time.Time) error

	// NextAddressIndex returns a number never returned before: overlay
	// addresses are derived from it and are never reused.
	NextAddressIndex() (uint64, error)

	PutDevice(d Device) error
	GetDevice(id certs.DeviceID) (Device, error)
	ListDevices() ([]Device, error)
	// ActiveDevicesByKey returns the active devices holding k, by index:
	// its cost does not grow with the number of devices stored.
	ActiveDevicesByKey(k DeviceKey) ([]Device, error)

	PutCertificate(c CertRecord) error
	GetCertificate(serial string) (CertRecord, error)
	// ListCertificates returns every issued certificate, oldest first.
	ListCertificates() ([]CertRecord, error)
	// CertificatesOfDevice and CertificatesOfUser return the certificates
	// issued for a device (its machine certificates and the user
	// certificates on it) or to a user, oldest first, by index.
	CertificatesOfDevice(id certs.DeviceID) ([]CertRecord, error)
	CertificatesOfUser(id certs.UserID) ([]CertRecord, error)
	// RevokedCertificates returns the revoked certificates that have not
	// expired at now (what a CRL lists), by index: expired ones cost
	// nothing. Only Serial, NotAfter, RevokedAt and RevokeReason are set.
	RevokedCertificates(now time.Time) ([]CertRecord, error)
	// NextCRLNumber returns a CRL number never returned before.
	NextCRLNumber() (uint64, error)
	// RaiseAddressIndex and RaiseCRLNumber make the next NextAddressIndex
	// and NextCRLNumber return more than atLeast (a restored CA learning
	// what the lost one handed out); they never lower a counter.
	RaiseAddressIndex(atLeast uint64) error
	RaiseCRLNumber(atLeast uint64) error

	PutUser(u User) error
	GetUser(id certs.UserID) (User, error)
	ListUsers() ([]User, error)
	DeleteUser(id certs.UserID) error

	PutPending(p PendingEnrollment) error
	GetPending(id string) (PendingEnrollment, error)
	ListPending() ([]PendingEnrollment, error)

	// MarkIDTokenUsed records the hash of an ID token until expires; it
	// returns ErrExists if the token was already used, so that one token
	// yields at most one user certificate. Expired marks are purged.
	MarkIDTokenUsed(hash string, expires, now time.Time) error

	IntentStore
}

// UserState says whether a user may log in.
type UserState string

// The user states.
const (
	UserPending  UserState = "pending"  // first login waits for an admin
	UserApproved UserState = "approved" // may log in
	UserRevoked  UserState = "revoked"  // certificates revoked, may not log in
)

// User is a person who logged in through the identity provider.
type User struct {
	ID         certs.UserID  `json:"id"`
	Issuer     string        `json:"issuer"`
	Subject    string        `json:"subject"`
	Email      certs.Email   `json:"email"`
	Groups     []certs.Group `json:"groups,omitempty"`
	State      UserState     `json:"state"`
	FirstSeen  time.Time     `json:"first_seen"`
	LastLogin  time.Time     `json:"last_login,omitzero"`
	ApprovedAt time.Time     `json:"approved_at,omitzero"`
	// Devices lists the devices the user logged in on, with the serial
	// of the newest user certificate on each.
	Devices map[certs.DeviceID]string `json:"devices,omitempty"`
}

// Token is a one-time enrollment token. Only the SHA-256 of its secret is
// stored.
type Token struct {
	ID         string         `json:"id"`
	SecretHash [32]byte       `json:"secret_hash"`
	Tags       []certs.Tag    `json:"tags,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	ExpiresAt  time.Time      `json:"expires_at"`
	UsedAt     time.Time      `json:"used_at,omitzero"`
	UsedBy     certs.DeviceID `json:"used_by,omitempty"`
	// RevokedAt is when an admin revoked the unused token (it enrolls
	// nothing after).
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Nonce is a single-use server challenge.
type Nonce struct {
	Value     string    `json:"value"`
	ExpiresAt time.Time `json:"expires_at"`
}

// DeviceState says whether a device may still get certificates.
type DeviceState string

// The device states.
const (
	DeviceActive  DeviceState = "active"
	DeviceRevoked DeviceState = "revoked"
)

// Device is an enrolled device.
type Device struct {
	ID           certs.DeviceID         `json:"id"`
	Hostname     certs.Hostname         `json:"hostname"`
	Addresses    []netip.Addr           `json:"addresses"`
	WireGuardKey certs.WireGuardKey     `json:"wireguard_key"`
	DeviceKeyFP  string                 `json:"device_key_sha256"` // SHA-256 of the device key's SPKI
	Attestation  certs.AttestationLevel `json:"attestation"`
	EKFP         string                 `json:"ek_sha256,omitempty"` // TPM: SHA-256 of the EK's public key
	Tags         []certs.Tag            `json:"tags,omitempty"`
	State        DeviceState            `json:"state"`
	Serial       string                 `json:"serial"` // current certificate
	NotAfter     time.Time              `json:"not_after"`
	TokenID      string                 `json:"token_id,omitempty"`
	EnrolledAt   time.Time              `json:"enrolled_at"`
	RenewedAt    time.Time              `json:"renewed_at,omitzero"`
	RevokedAt    time.Time              `json:"revoked_at,omitzero"`
	// RequestedRoutes and RequestedServices are what the device last asked
	// to route and offer (its enrollment or latest renewal request);
	// ApprovedRoutes and ApprovedServices what an admin approved for it.
	// Routes and Services are what its current certificate carries: the
	// requested ones that an admin or one of its tags (ca.Config.
	// AutoApprove) approved. ReissueDue says an approval changed that set
	// since the certificate was issued: the device is told to renew.
	RequestedRoutes   []netip.Prefix  `json:"requested_routes,omitempty"`
	ApprovedRoutes    []netip.Prefix  `json:"approved_routes,omitempty"`
	Routes            []netip.Prefix  `json:"routes,omitempty"`
	RequestedServices []certs.Service `json:"requested_services,omitempty"`
	ApprovedServices  []certs.Service `json:"approved_services,omitempty"`
	Services          []certs.Service `json:"services,omitempty"`
	ReissueDue        bool            `json:"reissue_due,omitempty"`
}

// KeyKind is the kind of key a DeviceKey names.
type KeyKind byte

// The indexed device keys: one of each is held by at most one active
// device.
const (
	KeyWireGuard KeyKind = 'w' // the WireGuard public key (base64)
	KeyDevice    KeyKind = 'd' // the SHA-256 of the device key's SPKI (hex)
	KeyEK        KeyKind = 'e' // the SHA-256 of the TPM EK's public key (hex)
)

// DeviceKey is a key an active device is found by.
type DeviceKey struct {
	Kind  KeyKind
	Value string
}

// WireGuardKeyOf, DeviceKeyOf and EKOf name the keys of each kind.
func WireGuardKeyOf(k certs.WireGuardKey) DeviceKey { return DeviceKey{KeyWireGuard, k.String()} }

// DeviceKeyOf names a device key by its SPKI's SHA-256 (hex).
func DeviceKeyOf(fp string) DeviceKey { return DeviceKey{KeyDevice, fp} }

// EKOf names a TPM by its EK's SHA-256 (hex).
func EKOf(fp string) DeviceKey { return DeviceKey{KeyEK, fp} }

// Keys returns the keys d is indexed by: none unless it is active.
func (d Device) Keys() []DeviceKey {
	if d.State != DeviceActive {
		return nil
	}
	ks := []DeviceKey{WireGuardKeyOf(d.WireGuardKey)}
	if d.DeviceKeyFP != "" {
		ks = append(ks, DeviceKeyOf(d.DeviceKeyFP))
	}
	if d.EKFP != "" {
		ks = append(ks, EKOf(d.EKFP))
	}
	return ks
}

// HasKey says whether d is active and holds k.
func (d Device) HasKey(k DeviceKey) bool {
	for _, dk := range d.Keys() {
		if dk == k {
			return true
		}
	}
	return false
}

// CertRecord is one issued certificate.
type CertRecord struct {
	Serial     string         `json:"serial"`
	DeviceID   certs.DeviceID `json:"device_id"`
	UserID     certs.UserID   `json:"user_id,omitempty"` // set for user certificates
	DER        []byte         `json:"der"`
	IssuedAt   time.Time      `json:"issued_at"`
	NotAfter   time.Time      `json:"not_after"`
	Superseded bool           `json:"superseded,omitempty"`
	RevokedAt  time.Time      `json:"revoked_at,omitzero"`
	// RevokeReason is an RFC 5280 reason code (certs.Revoke*).
	RevokeReason int `json:"revoke_reason,omitempty"`
}

// PendingState is where an enrollment waiting for approval stands.
type PendingState string

// The pending enrollment states.
const (
	PendingWaiting  PendingState = "waiting"
	PendingApproved PendingState = "approved"
	PendingDenied   PendingState = "denied"
)

// PendingEnrollment is an enrollment that passed every check and waits for
// an admin (approval: required). It holds what the admin needs to decide
// and what the CA needs to issue once approved.
type PendingEnrollment struct {
	ID           string                 `json:"id"`
	PollHash     [32]byte               `json:"poll_hash"` // SHA-256 of the secret the agent polls with
	State        PendingState           `json:"state"`
	Hostname     certs.Hostname         `json:"hostname"`
	Tags         []certs.Tag            `json:"tags,omitempty"`
	TokenID      string                 `json:"token_id,omitempty"`
	RemoteAddr   string                 `json:"remote_addr"`
	RequestedAt  time.Time              `json:"requested_at"`
	Attestation  certs.AttestationLevel `json:"attestation"`
	EKFP         string                 `json:"ek_sha256,omitempty"`
	Manufacturer string                 `json:"tpm_manufacturer,omitempty"`
	CSR          []byte                 `json:"csr"`
	WireGuardKey certs.WireGuardKey     `json:"wireguard_key"`
	DeviceKeyFP  string                 `json:"device_key_sha256"`
	DecidedAt    time.Time              `json:"decided_at,omitzero"`
	Reason       string                 `json:"reason,omitempty"` // why it was denied
	DeviceID     certs.DeviceID         `json:"device_id,omitempty"`
	// The routes and services the enrollment asked for.
	RequestedRoutes   []netip.Prefix  `json:"requested_routes,omitempty"`
	RequestedServices []certs.Service `json:"requested_services,omitempty"`
}

// Intent is a change the transparency log must record before it takes
// effect (an issuance or a revocation), written ahead of the log append.
// The CA records the intent, appends Leaves to the log, then applies the
// records and deletes the intent, each step durable on its own. Recovery
// applies an intent whose leaves are in the log and discards one whose
// leaves are not, so that the database holds everything the log shows and
// nothing it does not.
type Intent struct {
	ID        string    `json:"id"`
	Op        string    `json:"op"` // enroll, renew, login, revoke...: for the operator's log
	CreatedAt time.Time `json:"created_at"`
	// Leaves are the log entries, in the log's leaf encoding.
	Leaves [][]byte `json:"leaves"`
	// The records applying the intent writes, whole.
	Devices      []Device            `json:"devices,omitempty"`
	Certificates []CertRecord        `json:"certificates,omitempty"`
	Tokens       []Token             `json:"tokens,omitempty"`
	Users        []User              `json:"users,omitempty"`
	Pending      []PendingEnrollment `json:"pending,omitempty"`
}

// IntentStore holds the intents of changes not yet applied. A Tx of every
// backend implements it.
type IntentStore interface {
	PutIntent(in Intent) error
	// ListIntents returns the intents, oldest first.
	ListIntents() ([]Intent, error)
	DeleteIntent(id string) error
}
