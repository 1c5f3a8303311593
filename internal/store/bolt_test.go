package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestBoltUpdateIsAtomic(t *testing.T) {
	s, err := OpenBolt(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	boom := errors.New("boom")
	err = s.Update(ctx, func(tx Tx) error {
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

func TestNonceSingleUse(t *testing.T) {
	s, err := OpenBolt(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
}

func TestAddressIndexNeverRepeats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	seen := map[uint64]bool{}
	for round := 0; round < 2; round++ { // across a reopen
		s, err := OpenBolt(path)
		if err != nil {
			t.Fatal(err)
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
		s.Close()
	}
}
