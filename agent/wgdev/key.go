package wgdev

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
)

// redacted is what a PrivateKey prints as, whichever way it is formatted.
const redacted = "wgdev.PrivateKey(redacted)"

// PrivateKey is a WireGuard (Curve25519) private key.
//
// It never reveals itself when printed: String, every fmt verb (including
// %x, %v, %+v and %#v), slog and text/JSON marshalling all yield
// "wgdev.PrivateKey(redacted)". Persist it with [PrivateKey.Save] and read
// it back with [LoadPrivateKey].
type PrivateKey [32]byte

var (
	_ fmt.Stringer   = PrivateKey{}
	_ fmt.Formatter  = PrivateKey{}
	_ slog.LogValuer = PrivateKey{}
)

// GeneratePrivateKey returns a new random, clamped X25519 private key.
func GeneratePrivateKey() (PrivateKey, error) {
	var k PrivateKey
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return k, fmt.Errorf("generating WireGuard private key: %w", err)
	}
	copy(k[:], priv.Bytes())
	k.clamp()
	return k, nil
}

// clamp applies the standard Curve25519 scalar clamping, as wg genkey does.
func (k *PrivateKey) clamp() {
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
}

// IsZero reports whether k is the all-zero (unset) key.
func (k PrivateKey) IsZero() bool {
	var z PrivateKey
	return subtle.ConstantTimeCompare(k[:], z[:]) == 1
}

// Equal reports whether k and o are the same key, in constant time.
func (k PrivateKey) Equal(o PrivateKey) bool {
	return subtle.ConstantTimeCompare(k[:], o[:]) == 1
}

// Public returns the public key corresponding to k.
func (k PrivateKey) Public() certs.WireGuardKey {
	var pub certs.WireGuardKey
	priv, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil {
		// Only possible for a wrong length, which the array type rules out.
		panic("wgdev: X25519 private key: " + err.Error())
	}
	copy(pub[:], priv.PublicKey().Bytes())
	return pub
}

// String returns a fixed placeholder; it never reveals the key.
func (k PrivateKey) String() string { return redacted }

// GoString returns a fixed placeholder; it never reveals the key.
func (k PrivateKey) GoString() string { return redacted }

// Format implements fmt.Formatter so that no verb (%x, %v, %+v, %#v, %d,
// ...) can print the key bytes.
func (k PrivateKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue implements slog.LogValuer; the key is logged as a placeholder.
func (k PrivateKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns the placeholder, so that encoding/json and friends
// (e.g. a JSON log handler dumping a Config) cannot leak the key. There is
// deliberately no UnmarshalText: use Save and LoadPrivateKey to persist keys.
func (k PrivateKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Save writes k to path in wg(8) format (base64 and a newline, readable by
// `wg pubkey`). The file is written atomically with mode 0600; an existing
// file at path is replaced.
func (k PrivateKey) Save(path string) error {
	if k.IsZero() {
		return errors.New("saving WireGuard private key: key is zero")
	}
	buf := make([]byte, base64.StdEncoding.EncodedLen(len(k))+1)
	base64.StdEncoding.Encode(buf, k[:])
	buf[len(buf)-1] = '\n'
	err := atomicfile.WriteFile(path, buf, 0o600)
	clear(buf)
	if err != nil {
		return fmt.Errorf("saving WireGuard private key: %w", err)
	}
	return nil
}

// LoadPrivateKey reads a key written by [PrivateKey.Save] (or by
// `wg genkey > file`). It refuses a file that is not a regular file or that
// is accessible by group or others (mode & 0077 != 0).
func LoadPrivateKey(path string) (PrivateKey, error) {
	var k PrivateKey
	f, err := os.Open(path)
	if err != nil {
		return k, fmt.Errorf("loading WireGuard private key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return k, fmt.Errorf("loading WireGuard private key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return k, fmt.Errorf("loading WireGuard private key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return k, fmt.Errorf("loading WireGuard private key %s: permissions %#o are too open, want 0600", path, perm)
	}
	buf := make([]byte, 128)
	defer clear(buf)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return k, fmt.Errorf("loading WireGuard private key %s: %w", path, err)
	}
	if n == len(buf) {
		return k, fmt.Errorf("loading WireGuard private key %s: file too long", path)
	}
	text := bytes.TrimSpace(buf[:n])
	// Errors below deliberately do not wrap the decoder's error, which can
	// quote parts of the input.
	bad := fmt.Errorf("loading WireGuard private key %s: not a base64 32-byte key", path)
	if len(text) != base64.StdEncoding.EncodedLen(len(k)) {
		return k, bad
	}
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	defer clear(raw)
	m, err := base64.StdEncoding.Decode(raw, text)
	if err != nil || m != len(k) {
		return k, bad
	}
	copy(k[:], raw)
	if k.IsZero() {
		return k, fmt.Errorf("loading WireGuard private key %s: all-zero key", path)
	}
	k.clamp()
	return k, nil
}
