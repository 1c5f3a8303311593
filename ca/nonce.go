package ca

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/certmesh/certmesh/internal/wire"
)

// NonceTTL is how long an enrollment or renewal nonce stays valid.
const NonceTTL = 2 * time.Minute

// Nonces cost no storage. A nonce is
//
//	base64url( version ‖ issued-at (int64 ns, big endian) ‖ 16 random bytes ‖ MAC )
//
// where MAC is the first 16 bytes of HMAC-SHA256 under a key that exists
// only in this process's memory, over a context string and the bytes
// before it. POST /v1/ca/nonce writes nothing; a presented nonce is checked
// by recomputing the MAC (constant-time), then its age, then a bounded
// cache of the nonces spent within their validity. A restart draws a new
// key, so a nonce issued before it is refused ("not issued by this CA"):
// the spent cache, lost with the restart, never has to remember it.
const (
	nonceVersion  = 1
	nonceRandLen  = 16
	nonceMACLen   = 16
	nonceBodyLen  = 1 + 8 + nonceRandLen
	nonceLen      = nonceBodyLen + nonceMACLen
	nonceMACLabel = "certmesh CA nonce v1\x00"
	// maxSpentNonces bounds the spent cache. It fills only with nonces
	// spent on requests (each rate-limited) within NonceTTL; when it is
	// full of unexpired entries a nonce is refused rather than forgotten,
	// which would let it be replayed.
	maxSpentNonces = 1 << 16
)

// nonces issues and checks stateless nonces.
type nonces struct {
	key [32]byte

	mu sync.Mutex
	// spent holds the nonces spent by requests anyone can make (enroll,
	// renewal after expiry), spentAuth those spent by mTLS renewals: a
	// flood of anonymous requests filling its cache cannot stop devices
	// with a valid certificate from renewing. Each is checked by both.
	spent, spentAuth map[[nonceMACLen]byte]time.Time // MAC → when the nonce expires
	nextSweep        time.Time
}

// nonceUse says which spent cache a request's nonce goes to.
type nonceUse bool

const (
	nonceAnonymous     nonceUse = false // no client certificate checked yet
	nonceAuthenticated nonceUse = true  // after certs.Verify of the mTLS certificate
)

func newNonces() (*nonces, error) {
	n := &nonces{spent: map[[nonceMACLen]byte]time.Time{}, spentAuth: map[[nonceMACLen]byte]time.Time{}}
	if _, err := rand.Read(n.key[:]); err != nil {
		return nil, fmt.Errorf("generating the nonce key: %w", err)
	}
	return n, nil
}

func (n *nonces) mac(body []byte) []byte {
	m := hmac.New(sha256.New, n.key[:])
	m.Write([]byte(nonceMACLabel))
	m.Write(body)
	return m.Sum(nil)[:nonceMACLen]
}

// issue returns a fresh nonce issued at now.
func (n *nonces) issue(now time.Time) (string, error) {
	b := make([]byte, nonceBodyLen, nonceLen)
	b[0] = nonceVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(now.UnixNano()))
	if _, err := rand.Read(b[9:]); err != nil {
		return "", fmt.Errorf("generating nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(append(b, n.mac(b)...)), nil
}

// spend checks a presented nonce and marks it used: it must be one this
// process issued, less than NonceTTL ago, and not spent before (by either
// kind of request); use picks the cache it is recorded in.
func (n *nonces) spend(value string, now time.Time, use nonceUse) error {
	if value == "" {
		return refuse(CodeBadNonce, "nonce is missing (get one from %s first)", wire.PathNonce)
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) != nonceLen || raw[0] != nonceVersion {
		return refuse(CodeBadNonce, "nonce is malformed (get one from %s)", wire.PathNonce)
	}
	body, tag := raw[:nonceBodyLen], raw[nonceBodyLen:]
	if !hmac.Equal(tag, n.mac(body)) {
		return refuse(CodeBadNonce, "nonce is unknown: this CA did not issue it, or has restarted since (get a new one)")
	}
	expires := time.Unix(0, int64(binary.BigEndian.Uint64(body[1:9]))).Add(NonceTTL)
	if now.After(expires) {
		return refuse(CodeBadNonce, "nonce expired at %s", expires.UTC().Format(time.RFC3339))
	}
	key := [nonceMACLen]byte(tag)
	n.mu.Lock()
	defer n.mu.Unlock()
	_, used := n.spent[key]
	_, usedAuth := n.spentAuth[key]
	if used || usedAuth {
		return refuse(CodeBadNonce, "nonce was already used")
	}
	cache := n.spent
	if use == nonceAuthenticated {
		cache = n.spentAuth
	}
	if len(cache) >= maxSpentNonces || now.After(n.nextSweep) {
		for _, m := range []map[[nonceMACLen]byte]time.Time{n.spent, n.spentAuth} {
			for k, exp := range m {
				if now.After(exp) {
					delete(m, k)
				}
			}
		}
		n.nextSweep = now.Add(NonceTTL)
	}
	if len(cache) >= maxSpentNonces {
		return refuse(CodeRateLimited, "too many enrollments and renewals in the last %s; try again shortly", NonceTTL)
	}
	cache[key] = expires
	return nil
}

// NewNonce issues a single-use challenge; it stores nothing.
func (c *CA) NewNonce(ctx context.Context) (wire.NonceResponse, error) {
	now := c.now()
	v, err := c.nonces.issue(now)
	if err != nil {
		return wire.NonceResponse{}, err
	}
	return wire.NonceResponse{Nonce: v, Expires: now.Add(NonceTTL)}, nil
}

// takeNonce spends a nonce, so that it is spent even when the request that
// presented it is refused.
func (c *CA) takeNonce(_ context.Context, value string, use nonceUse) error {
	return c.nonces.spend(value, c.now(), use)
}
