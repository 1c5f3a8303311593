package relayc

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/testca"
)

// TestRefreshOutlivesFirstLifetime: an allocation granted 2 s is still
// relaying after the relay has expired a twin allocation of the same
// lifetime that does not refresh (the event that proves the first lifetime
// is over on the relay's own clock; nothing sleeps for an expiry).
func TestRefreshOutlivesFirstLifetime(t *testing.T) {
	ca, _ := testRoots(t)
	r := startTURN(t, ca)
	ina, inb := newInbox(), newInbox()
	const life = 2 * time.Second
	a := allocate(t, AllocConfig{Transport: UDP, Addr: r.udp, Receive: ina.receive, Lifetime: life})
	canary := allocate(t, AllocConfig{Transport: UDP, Addr: r.udp, Receive: func([]byte, netip.AddrPort) {}, Lifetime: life, noRefresh: true})
	b := allocate(t, AllocConfig{Transport: UDP, Addr: r.udp, Receive: inb.receive})
	if a.Lifetime() != life {
		t.Fatalf("relay granted %v, want %v", a.Lifetime(), life)
	}
	deadline := time.Now().Add(20 * life)
	for !r.wasDeleted(canary.MappedAddr()) {
		if time.Now().After(deadline) {
			t.Fatalf("the relay never expired the allocation that does not refresh (%s)", canary.MappedAddr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.wasDeleted(a.MappedAddr()) {
		t.Fatalf("the relay expired the refreshing allocation too")
	}
	select {
	case <-a.Done():
		t.Fatalf("refreshing allocation ended: %v", a.Err())
	default:
	}
	permit(t, a, b.RelayedAddr().Addr())
	permit(t, b, a.RelayedAddr().Addr())
	exchange(t, a, b, ina, inb, "after the first lifetime")
}

// TestTLSRelayMustChainToPinnedRoots: a relay whose certificate comes from
// another CA is refused at the TLS handshake; no allocation is made.
func TestTLSRelayMustChainToPinnedRoots(t *testing.T) {
	ca, _ := testRoots(t)
	other := testca.New(t, "relay.test") // same trust domain name, other root
	r := startTURN(t, other)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := Allocate(ctx, AllocConfig{Transport: TLS, Addr: r.tls, TLS: TLSConfig(ca.Roots(), nil),
		Username: testUser, Password: testPass, Receive: func([]byte, netip.AddrPort) {}})
	if err == nil {
		_ = a.Close()
		t.Fatal("allocated through a relay whose certificate does not chain to the pinned roots")
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("error does not say the certificate was refused: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.allocated); n != 0 {
		t.Fatalf("the relay made %d allocations", n)
	}
}

// TestWrongCredentialsRefused: the relay's refusal of credentials it does
// not accept (pion answers a bad MESSAGE-INTEGRITY with 400) ends Allocate
// with a RelayError naming the code, after one authenticated attempt.
func TestWrongCredentialsRefused(t *testing.T) {
	ca, _ := testRoots(t)
	r := startTURN(t, ca)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Allocate(ctx, AllocConfig{Transport: UDP, Addr: r.udp, Username: testUser, Password: "wrong",
		Receive: func([]byte, netip.AddrPort) {}})
	var re *RelayError
	if !errors.As(err, &re) || re.Op != "Allocate" || (re.Code != 400 && re.Code != 401) {
		t.Fatalf("Allocate with a wrong password: %v, want a 400 or 401 RelayError", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.allocated); n != 0 {
		t.Fatalf("the relay made %d allocations", n)
	}
}
