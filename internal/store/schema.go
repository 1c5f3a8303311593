package store

import (
	"encoding/binary"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the layout of certmesh.db this build reads and writes,
// kept in the meta bucket. Version 1 is the layout from before the version
// was stored (no schema-version key); a newer server migrates an older
// store at open, and an older server refuses a newer one rather than
// misread it.
const SchemaVersion = 3

var keySchema = []byte("schema-version")

// migration brings a store at version from to version from+1, inside the
// open's write transaction (all migrations commit together or not at all).
type migration struct {
	from int
	what string
	fn   func(tx *bolt.Tx) error
}

// migrations, in order; the last one's from+1 is SchemaVersion.
var migrations = []migration{
	// 1 → 2: the version itself is stored; the records are unchanged.
	{from: 1, what: "store the schema version", fn: func(*bolt.Tx) error { return nil }},
	// 2 → 3: indexes of active devices by key, of certificates by device
	// and user, and of revoked certificates by expiry (boltindex.go).
	{from: 2, what: "index devices by key and certificates by device, user and revocation", fn: buildIndexes},
}

// ErrNewerSchema is wrapped by OpenBolt's error for a store written by a
// newer server.
var ErrNewerSchema = fmt.Errorf("written by a newer certmesh-server")

// schemaOf returns the stored schema version (1 if none is stored).
func schemaOf(tx *bolt.Tx) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 1, nil
	}
	v := meta.Get(keySchema)
	if v == nil {
		return 1, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("stored schema version is malformed (%d bytes)", len(v))
	}
	return int(binary.BigEndian.Uint64(v)), nil
}

// migrate checks the store's schema version and runs the migrations up to
// SchemaVersion. fresh says the database was just created (nothing to
// migrate: it is stamped at once).
func migrate(tx *bolt.Tx, path string, fresh bool) error {
	v, err := schemaOf(tx)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if fresh {
		v = SchemaVersion
	}
	if v > SchemaVersion {
		return fmt.Errorf("%s has store schema version %d, %w, but this certmesh-server reads version %d at most: "+
			"run the newer certmesh-server (or restore a backup taken before the upgrade)", path, v, ErrNewerSchema, SchemaVersion)
	}
	for _, m := range migrations {
		if m.from < v {
			continue
		}
		if err := m.fn(tx); err != nil {
			return fmt.Errorf("%s: migrating the store schema from version %d to %d (%s): %w", path, m.from, m.from+1, m.what, err)
		}
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], SchemaVersion)
	return tx.Bucket(bucketMeta).Put(keySchema, buf[:])
}

// Schema returns the store's schema version.
func (b *Bolt) Schema() (v int, err error) {
	err = b.db.View(func(tx *bolt.Tx) error { v, err = schemaOf(tx); return err })
	return v, err
}

// WriteTo writes a consistent copy of the whole database to w (bbolt's
// own snapshot: one read transaction, so writers go on meanwhile). The
// copy is a database file on its own.
func (b *Bolt) WriteTo(w io.Writer) (n int64, err error) {
	err = b.db.View(func(tx *bolt.Tx) error { n, err = tx.WriteTo(w); return err })
	return n, err
}
