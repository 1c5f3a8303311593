package store

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

func testUpdateIsAtomic(t *testing.T, s Store, _ func() Store) {
	ctx := context.Background()
	boom := errors.New("boom")
	err := s.Update(ctx, func(tx Tx) error {
		if err := tx.PutToken(Token{ID: "t1"}); err != nil {
			return err
		}
		if _, err := tx.NextAddressIndex(); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update error = %v", err)
	}
	err = s.View(ctx, func(tx Tx) error {
		_, err := tx.GetToken("t1")
		return err
	})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("token written by a failed transaction: %v", err)
	}
	var idx uint64
	if err := s.Update(ctx, func(tx Tx) (err error) { idx, err = tx.NextAddressIndex(); return }); err != nil {
		t.Fatal(err)
	}
	if idx != 1 {
		t.Fatalf("address index after rolled-back increment = %d, want 1", idx)
	}
}

func testNonceSingleUse(t *testing.T, s Store, _ func() Store) {
	ctx := context.Background()
	n := Nonce{Value: "abc", ExpiresAt: time.Now().Add(time.Minute)}
	if err := s.Update(ctx, func(tx Tx) error { return tx.PutNonce(n) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx Tx) error { return tx.PutNonce(n) }); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate nonce: %v", err)
	}
	for i, want := range []error{nil, ErrNotFound} {
		err := s.Update(ctx, func(tx Tx) error { _, err := tx.TakeNonce("abc"); return err })
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Fatalf("take %d: %v, want %v", i, err, want)
		}
	}
	// Expired nonces are purged, fresh ones kept.
	old := Nonce{Value: "old", ExpiresAt: time.Now().Add(-time.Minute)}
	err := s.Update(ctx, func(tx Tx) error {
		if err := tx.PutNonce(old); err != nil {
			return err
		}
		if err := tx.PutNonce(n); err != nil {
			return err
		}
		return tx.PurgeNonces(time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx Tx) error {
		if _, err := tx.TakeNonce("old"); !errors.Is(err, ErrNotFound) {
			t.Errorf("expired nonce after purge: %v", err)
		}
		_, err := tx.TakeNonce("abc")
		return err
	})
	if err != nil {
		t.Fatalf("fresh nonce after purge: %v", err)
	}
}

func testAddressIndexNeverRepeats(t *testing.T, s Store, reopen func() Store) {
	seen := map[uint64]bool{}
	for round := 0; round < 2; round++ { // across a reopen
		if round > 0 {
			s = reopen()
		}
		for i := 0; i < 50; i++ {
			var idx uint64
			if err := s.Update(context.Background(), func(tx Tx) (err error) { idx, err = tx.NextAddressIndex(); return }); err != nil {
				t.Fatal(err)
			}
			if seen[idx] {
				t.Fatalf("index %d returned twice", idx)
			}
			seen[idx] = true
		}
	}
}

func testUsers(t *testing.T, s Store, _ func() Store) {
	ctx := context.Background()
	now := time.Now()
	a := User{ID: "alice1", Email: "alice@corp.example", Groups: []certs.Group{"eng"}, State: UserPending, FirstSeen: now}
	b := User{ID: "bob1", Email: "bob@corp.example", State: UserApproved, FirstSeen: now.Add(time.Second)}
	err := s.Update(ctx, func(tx Tx) error {
		if err := tx.PutUser(b); err != nil {
			return err
		}
		return tx.PutUser(a)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx Tx) error {
		got, err := tx.GetUser("alice1")
		if err != nil || got.Email != a.Email || got.State != UserPending || len(got.Groups) != 1 {
			t.Fatalf("GetUser = %+v, %v", got, err)
		}
		all, err := tx.ListUsers()
		if err != nil || len(all) != 2 || all[0].ID != "alice1" || all[1].ID != "bob1" {
			t.Fatalf("ListUsers = %+v, %v (want by first seen)", all, err)
		}
		if err := tx.DeleteUser("alice1"); err != nil {
			return err
		}
		if _, err := tx.GetUser("alice1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted user: %v", err)
		}
		if err := tx.DeleteUser("alice1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleting twice: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testIDTokenUsedOnce(t *testing.T, s Store, _ func() Store) {
	ctx := context.Background()
	now := time.Now()
	mark := func(hash string, exp, at time.Time) error {
		return s.Update(ctx, func(tx Tx) error { return tx.MarkIDTokenUsed(hash, exp, at) })
	}
	if err := mark("aaaa", now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if err := mark("aaaa", now.Add(time.Hour), now); !errors.Is(err, ErrExists) {
		t.Fatalf("second use: %v, want ErrExists", err)
	}
	if err := mark("bbbb", now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	// Once expired, the mark is purged (the token itself is expired too).
	if err := mark("aaaa", now.Add(3*time.Hour), now.Add(2*time.Hour)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

// testRecords writes one record of each kind and reads it back whole, and
// lists each kind in its order (oldest first).
func testRecords(t *testing.T, s Store, reopen func() Store) {
	ctx := context.Background()
	at := time.Date(2026, 12, 4, 3, 0, 0, 123456789, time.UTC)
	dev := Device{
		ID: "dev1", Hostname: "web", Addresses: []netip.Addr{netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("fd00::1")},
		WireGuardKey: certs.WireGuardKey{4}, DeviceKeyFP: "ab", Attestation: certs.AttestationToken, Tags: []certs.Tag{"tag:web"},
		State: DeviceActive, Serial: "0a", NotAfter: at.Add(time.Hour), EnrolledAt: at,
		RequestedRoutes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
	}
	cert := CertRecord{Serial: "0a", DeviceID: "dev1", DER: []byte{1, 2, 3}, IssuedAt: at, NotAfter: at.Add(time.Hour)}
	tok := Token{ID: "tok1", SecretHash: [32]byte{9}, CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
	pend := PendingEnrollment{ID: "p1", State: PendingWaiting, Hostname: "db", RequestedAt: at, CSR: []byte{5}, WireGuardKey: certs.WireGuardKey{6}}
	in := Intent{ID: "i1", Op: "enroll", CreatedAt: at, Leaves: [][]byte{{7, 7}}, Devices: []Device{dev}}
	err := s.Update(ctx, func(tx Tx) error {
		for _, put := range []func() error{
			func() error { return tx.PutDevice(dev) },
			func() error { return tx.PutCertificate(cert) },
			func() error { return tx.PutToken(tok) },
			func() error { return tx.PutPending(pend) },
			func() error { return tx.PutIntent(in) },
			func() error { return tx.PutToken(Token{ID: "tok0", CreatedAt: at.Add(-time.Hour)}) },
			func() error { return tx.PutIntent(Intent{ID: "i0", CreatedAt: at.Add(-time.Hour)}) },
		} {
			if err := put(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s = reopen()
	err = s.View(ctx, func(tx Tx) error {
		check := func(what string, got, want any, err error) {
			t.Helper()
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("%s = %+v, %v\nwant %+v", what, got, err, want)
			}
		}
		gd, err := tx.GetDevice("dev1")
		check("GetDevice", gd, dev, err)
		gc, err := tx.GetCertificate("0a")
		check("GetCertificate", gc, cert, err)
		gt, err := tx.GetToken("tok1")
		check("GetToken", gt, tok, err)
		gp, err := tx.GetPending("p1")
		check("GetPending", gp, pend, err)
		toks, err := tx.ListTokens()
		check("ListTokens order", []string{toks[0].ID, toks[1].ID}, []string{"tok0", "tok1"}, err)
		ins, err := tx.ListIntents()
		check("ListIntents order", []string{ins[0].ID, ins[1].ID}, []string{"i0", "i1"}, err)
		check("intent", ins[1], in, nil)
		for _, get := range []func() error{
			func() error { _, err := tx.GetDevice("nope"); return err },
			func() error { _, err := tx.GetCertificate("nope"); return err },
			func() error { _, err := tx.GetToken("nope"); return err },
			func() error { _, err := tx.GetPending("nope"); return err },
		} {
			if err := get(); !errors.Is(err, ErrNotFound) {
				t.Errorf("missing record: %v, want ErrNotFound", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx Tx) error { return tx.DeleteIntent("i1") }); err != nil {
		t.Fatal(err)
	}
	_ = s.View(ctx, func(tx Tx) error {
		ins, err := tx.ListIntents()
		if err != nil || len(ins) != 1 || ins[0].ID != "i0" {
			t.Errorf("after DeleteIntent: %+v, %v", ins, err)
		}
		return nil
	})
}

// testCounters checks that Raise never lowers a counter and that Next
// continues above it.
func testCounters(t *testing.T, s Store, _ func() Store) {
	ctx := context.Background()
	var got []uint64
	err := s.Update(ctx, func(tx Tx) error {
		for _, step := range []func() (uint64, error){
			tx.NextCRLNumber,
			func() (uint64, error) { return 0, tx.RaiseCRLNumber(10) },
			tx.NextCRLNumber,
			func() (uint64, error) { return 0, tx.RaiseCRLNumber(3) },
			tx.NextCRLNumber,
			func() (uint64, error) { return 0, tx.RaiseAddressIndex(100) },
			tx.NextAddressIndex,
		} {
			n, err := step()
			if err != nil {
				return err
			}
			if n != 0 {
				got = append(got, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{1, 11, 12, 101}; !reflect.DeepEqual(got, want) {
		t.Fatalf("counters = %v, want %v", got, want)
	}
}

// testCanceledMidTransaction: a transaction whose context is cancelled
// while it runs still commits whole (as bbolt does), and the store goes
// on serving writes.
func testCanceledMidTransaction(t *testing.T, s Store, _ func() Store) {
	ctx, cancel := context.WithCancel(context.Background())
	err := s.Update(ctx, func(tx Tx) error {
		cancel()
		if _, err := tx.NextAddressIndex(); err != nil {
			return err
		}
		return tx.PutToken(Token{ID: "t1"})
	})
	if err != nil {
		t.Fatalf("Update cancelled midway: %v", err)
	}
	var n uint64
	err = s.Update(context.Background(), func(tx Tx) (err error) {
		if _, err := tx.GetToken("t1"); err != nil {
			return err
		}
		n, err = tx.NextAddressIndex()
		return err
	})
	if err != nil || n != 2 {
		t.Fatalf("after a cancelled transaction: index %d, %v; want 2 and the token", n, err)
	}
}
