package certs

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// WireGuardKey is a Curve25519 public key of a WireGuard interface. It is a
// distinct type so that it is never confused with the device key (the
// certificate's subject key) or with arbitrary bytes.
type WireGuardKey [32]byte

// ParseWireGuardKey parses the standard base64 form used by wg(8).
func ParseWireGuardKey(s string) (WireGuardKey, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return WireGuardKey{}, fmt.Errorf("parsing WireGuard public key: %w", err)
	}
	k, err := WireGuardKeyFromBytes(b)
	if err != nil {
		return k, fmt.Errorf("parsing %w", err)
	}
	return k, nil
}

// WireGuardKeyFromBytes copies a 32-byte key.
func WireGuardKeyFromBytes(b []byte) (WireGuardKey, error) {
	var k WireGuardKey
	if len(b) != len(k) {
		return k, fmt.Errorf("WireGuard public key: got %d bytes, want %d", len(b), len(k))
	}
	copy(k[:], b)
	if k.IsZero() {
		return k, fmt.Errorf("WireGuard public key: all-zero key")
	}
	return k, nil
}

// String returns the base64 form, as wg(8) prints it.
func (k WireGuardKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Hex returns the hex form used by the WireGuard cross-platform UAPI.
func (k WireGuardKey) Hex() string { return hex.EncodeToString(k[:]) }

// IsZero reports whether the key is all zero (never a valid public key).
func (k WireGuardKey) IsZero() bool {
	var z WireGuardKey
	return subtle.ConstantTimeCompare(k[:], z[:]) == 1
}

// MarshalText implements encoding.TextMarshaler (base64).
func (k WireGuardKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (base64).
func (k *WireGuardKey) UnmarshalText(b []byte) error {
	p, err := ParseWireGuardKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}
