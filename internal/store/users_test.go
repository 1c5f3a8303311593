package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

func TestUsers(t *testing.T) {
	s, err := OpenBolt(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	a := User{ID: "alice1", Email: "alice@corp.example", Groups: []certs.Group{"eng"}, State: UserPending, FirstSeen: now}
	b := User{ID: "bob1", Email: "bob@corp.example", State: UserApproved, FirstSeen: now.Add(time.Second)}
	err = s.Update(ctx, func(tx Tx) error {
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

func TestIDTokenUsedOnce(t *testing.T) {
	s, err := OpenBolt(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
