package translog

import (
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestOpenRefusesNewerFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "translog.db")
	k := newTestKey(t, testOrigin)
	l, err := Open(path, k.signer, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, u64(storageFormat+1)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(path, k.signer, testOrigin)
	if err == nil || !strings.Contains(err.Error(), "format 2") || !strings.Contains(err.Error(), "format 1") {
		t.Fatalf("Open of a newer log format: %v, want both formats named", err)
	}
}
