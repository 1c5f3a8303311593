// Package relaycred is the format of certmesh's TURN relay credentials,
// shared by the CA that issues them and the relays that check them: a
// username that names a device and an expiry, and a password that is an
// HMAC-SHA256 of the username under a key the CA and that relay share, so
// a relay checks a credential without a database and without asking the CA.
//
// Each relay has its own key, derived from the CA's master key and the
// relay's name (DeriveKey): a relay (even a compromised one) can mint
// credentials only for itself, never for another relay.
package relaycred

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/internal/reason"
)

// version is the first field of every username.
const version = "c1"

// MaxLifetime bounds how far ahead of a relay's clock a username's expiry
// may lie: a relay refuses one further out (a CA whose clock ran ahead, or
// a username minted with a leaked key for far longer than the CA would).
const MaxLifetime = time.Hour

// MaxUsernameSize bounds a username (STUN allows 513 bytes).
const MaxUsernameSize = 128

// Reason says why a username was refused.
type Reason string

// The reasons.
const (
	ReasonMalformed Reason = "malformed"
	ReasonExpired   Reason = "expired"
	ReasonTooLong   Reason = "lifetime-too-long" // expiry beyond MaxLifetime
)

type message struct{}

func (message) Format(r string, err error) string {
	return fmt.Sprintf("relay credential refused (%s): %v", r, err)
}

// Error is a refused username.
type Error = reason.Error[Reason, message]

// ReasonOf is the reason of the first *Error in err's chain ("" if none).
func ReasonOf(err error) Reason { return reason.Of[Reason, message](err) }

func refuse(r Reason, format string, args ...any) error {
	return reason.New[Reason, message](r, format, args...)
}

// Username is what a TURN username says: the device it was issued to,
// when it expires (whole seconds) and, if set, the serial number of the
// machine certificate it was issued against (so that a relay that reads
// the CRL refuses it once that certificate is revoked).
type Username struct {
	Device  certs.DeviceID
	Expires time.Time
	Serial  *big.Int // nil: not named
}

// maxSerialHex bounds a serial in a username: 20 octets (RFC 5280 4.1.2.2).
const maxSerialHex = 40

// String is the username on the wire: "c1:<expiry, unix seconds>:<device
// ID>", then ":<serial, lowercase hex>" if the serial is set.
func (u Username) String() string {
	s := version + ":" + strconv.FormatInt(u.Expires.Unix(), 10) + ":" + string(u.Device)
	if u.Serial != nil {
		s += ":" + u.Serial.Text(16)
	}
	return s
}

// ParseUsername reads a username in the one form String writes; anything
// else (other version, sign, leading zeros, spaces, a bad device ID) is
// refused as malformed.
func ParseUsername(s string) (Username, error) {
	if len(s) > MaxUsernameSize {
		return Username{}, refuse(ReasonMalformed, "username is %d bytes, at most %d", len(s), MaxUsernameSize)
	}
	v, rest, ok := strings.Cut(s, ":")
	if !ok || v != version {
		return Username{}, refuse(ReasonMalformed, "username %q does not start with %q", s, version+":")
	}
	exp, dev, ok := strings.Cut(rest, ":")
	if !ok {
		return Username{}, refuse(ReasonMalformed, "username %q has no device ID", s)
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || unix <= 0 || strconv.FormatInt(unix, 10) != exp {
		return Username{}, refuse(ReasonMalformed, "username %q: expiry %q is not unix seconds", s, exp)
	}
	dev, serial, hasSerial := strings.Cut(dev, ":")
	id, err := certs.ParseDeviceID(dev)
	if err != nil {
		return Username{}, refuse(ReasonMalformed, "username %q: %v", s, err)
	}
	var sn *big.Int
	if hasSerial {
		sn, ok = new(big.Int).SetString(serial, 16)
		if !ok || len(serial) > maxSerialHex || sn.Sign() <= 0 || sn.Text(16) != serial {
			return Username{}, refuse(ReasonMalformed, "username %q: serial %q is not lowercase hex without leading zeros, 1 to %d digits", s, serial, maxSerialHex)
		}
	}
	return Username{Device: id, Expires: time.Unix(unix, 0), Serial: sn}, nil
}

// Check refuses a username that expired at now, or whose expiry is more
// than MaxLifetime ahead.
func (u Username) Check(now time.Time) error {
	if !now.Before(u.Expires) {
		return refuse(ReasonExpired, "username of device %s expired at %s (now %s)", u.Device, u.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if u.Expires.Sub(now) > MaxLifetime {
		return refuse(ReasonTooLong, "username of device %s expires at %s, more than %s ahead", u.Device, u.Expires.UTC().Format(time.RFC3339), MaxLifetime)
	}
	return nil
}

// Key is a relay key (or the CA's master key).
type Key [32]byte

// Password is the password of username for the relay holding k:
// base64url(HMAC-SHA256(k, label ‖ username)).
func (k Key) Password(username string) string {
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte("certmesh relay password v1\x00"))
	m.Write([]byte(username))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// DeriveKey is the key of the relay called name under the CA's master key.
func DeriveKey(master Key, name string) Key {
	m := hmac.New(sha256.New, master[:])
	m.Write([]byte("certmesh relay key v1\x00"))
	m.Write([]byte(name))
	var k Key
	copy(k[:], m.Sum(nil))
	return k
}

// NewKey returns a random key.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("generating relay key: %w", err)
	}
	return k, nil
}

// keyFileHeader starts a key file; the key follows in base64url.
const keyFileHeader = "certmesh-relay-key-v1 "

// WriteKeyFile stores k at path, mode 0600 (atomically).
func WriteKeyFile(path string, k Key) error {
	data := keyFileHeader + base64.RawURLEncoding.EncodeToString(k[:]) + "\n"
	if err := atomicfile.WriteFile(path, []byte(data), 0o600); err != nil {
		return fmt.Errorf("writing relay key %s: %w", path, err)
	}
	return nil
}

// ReadKeyFile reads a key written by WriteKeyFile, refusing a file that
// group or others may read.
func ReadKeyFile(path string) (Key, error) {
	var k Key
	st, err := os.Stat(path)
	if err != nil {
		return k, fmt.Errorf("reading relay key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return k, fmt.Errorf("relay key %s has mode %o: must not be readable by group or others (chmod 600)", path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return k, fmt.Errorf("reading relay key: %w", err)
	}
	s, ok := strings.CutPrefix(strings.TrimSuffix(string(data), "\n"), keyFileHeader)
	if !ok {
		return k, fmt.Errorf("relay key %s: not a certmesh relay key file", path)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) != len(k) {
		return k, errors.New("relay key " + path + ": the key is not 32 bytes of base64url")
	}
	copy(k[:], raw)
	return k, nil
}
