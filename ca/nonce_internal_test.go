package ca

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"
)

// FuzzSpendNonce: a presented nonce comes from the network. Nothing
// panics, every refusal is a typed bad-nonce *Error, and only the nonce
// the CA issued is accepted, once: no other string is.
func FuzzSpendNonce(f *testing.F) {
	n, err := newNonces()
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	genuine, err := n.issue(now)
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(genuine)
	f.Add(genuine)
	f.Add("")
	f.Add(genuine[:len(genuine)-1])
	f.Add(base64.RawURLEncoding.EncodeToString(append(raw, 0)))
	f.Fuzz(func(t *testing.T, s string) {
		err := n.spend(s, now.Add(time.Second), nonceAnonymous)
		if err == nil {
			if s != genuine {
				t.Fatalf("accepted %q, which the CA did not issue", s)
			}
			if n.spend(s, now.Add(time.Second), nonceAnonymous) == nil {
				t.Fatalf("accepted the nonce twice")
			}
			delete(n.spent, [nonceMACLen]byte(raw[nonceBodyLen:])) // the next input may be it again
			return
		}
		var e *Error
		if !errors.As(err, &e) || e.Reason != CodeBadNonce {
			t.Fatalf("refusal %v is not a typed bad-nonce error", err)
		}
	})
}

// The spent cache is bounded: full of nonces still valid, it refuses
// rather than forgets one (which would let it be replayed); once they
// expire, it takes new ones again.
func TestSpentNoncesBounded(t *testing.T) {
	n, err := newNonces()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	for i := range maxSpentNonces {
		n.spent[[nonceMACLen]byte{byte(i), byte(i >> 8), byte(i >> 16)}] = now.Add(NonceTTL)
	}
	v, err := n.issue(now)
	if err != nil {
		t.Fatal(err)
	}
	var e *Error
	if err := n.spend(v, now.Add(time.Second), nonceAnonymous); !errors.As(err, &e) || e.Reason != CodeRateLimited {
		t.Fatalf("spend with a full cache = %v, want a rate-limited refusal", err)
	}
	if len(n.spent) != maxSpentNonces {
		t.Fatalf("cache holds %d, want %d", len(n.spent), maxSpentNonces)
	}
	// Anonymous requests filling their cache cannot stop an mTLS renewal;
	// a nonce spent by one kind of request is spent for the other too.
	r, _ := n.issue(now)
	if err := n.spend(r, now.Add(time.Second), nonceAuthenticated); err != nil {
		t.Fatalf("an authenticated renewal with the anonymous cache full: %v", err)
	}
	if err := n.spend(r, now.Add(time.Second), nonceAnonymous); !errors.As(err, &e) || e.Reason != CodeBadNonce {
		t.Fatalf("a nonce spent by a renewal, presented again anonymously: %v, want already used", err)
	}
	// The refused nonce was not spent: once the others expire it still works.
	later := now.Add(NonceTTL + time.Second)
	w, _ := n.issue(later)
	if err := n.spend(w, later, nonceAnonymous); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if len(n.spent) != 1 {
		t.Fatalf("expired entries kept: %d", len(n.spent))
	}
	if err := n.spend(v, later, nonceAnonymous); !errors.As(err, &e) || e.Reason != CodeBadNonce {
		t.Fatalf("expired nonce: %v", err)
	}
}
