package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// writeRaw builds a database the way an older or newer server left it:
// every bucket, one token, and the given schema version (0: no version
// key, the layout before versioning).
func writeRaw(t *testing.T, path string, version uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTokens, bucketNonces, bucketDevices, bucketCerts, bucketMeta, bucketUsers, bucketIDToks, bucketPending, bucketIntents} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketTokens).Put([]byte("t1"), []byte(`{"id":"t1"}`)); err != nil {
			return err
		}
		if version == 0 {
			return nil
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, version))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSchemaMigratesOlderStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certmesh.db")
	writeRaw(t, path, 0) // version 1: no version stored
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.Schema(); err != nil || v != SchemaVersion {
		t.Fatalf("schema after migration = %d, %v; want %d", v, err, SchemaVersion)
	}
	err = s.View(context.Background(), func(tx Tx) error { _, err := tx.GetToken("t1"); return err })
	if err != nil {
		t.Fatalf("record lost by the migration: %v", err)
	}
}

func TestSchemaNewStoreIsStamped(t *testing.T) {
	s, err := OpenBolt(filepath.Join(t.TempDir(), "certmesh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.Schema(); v != SchemaVersion {
		t.Fatalf("new store has schema %d, want %d", v, SchemaVersion)
	}
}

func TestSchemaRefusesNewerStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certmesh.db")
	writeRaw(t, path, SchemaVersion+1)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenBolt(path)
	if !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("OpenBolt of a newer store: %v, want ErrNewerSchema", err)
	}
	for _, want := range []string{fmt.Sprintf("version %d", SchemaVersion+1), fmt.Sprintf("version %d at most", SchemaVersion)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("refusing a newer store changed the file")
	}
}

func TestWriteToIsADatabase(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(filepath.Join(dir, "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Update(ctx, func(tx Tx) error { return tx.PutToken(Token{ID: "t1"}) }); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "copy.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := CheckFile(f.Name()); err != nil {
		t.Fatal(err)
	}
	c, err := OpenBolt(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.View(ctx, func(tx Tx) error { _, err := tx.GetToken("t1"); return err }); err != nil {
		t.Fatalf("snapshot lacks the token: %v", err)
	}
}
