package translog

import (
	"bytes"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
)

// WriteTo writes a consistent copy of the log's file to w, in one read
// transaction (appends wait for nothing): the copy is a log file on its
// own, at the size the log had when the copy began.
func (l *Log) WriteTo(w io.Writer) (n int64, err error) {
	err = l.db.View(func(tx *bolt.Tx) error { n, err = tx.WriteTo(w); return err })
	return n, err
}

// StoredCheckpoint returns the signed checkpoint stored in the log file at
// path, as the server that wrote it signed it, opening the file read-only
// (Open signs a new one: read this first to learn who signed the file).
func StoredCheckpoint(path string) ([]byte, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("transparency log: opening %s: %w", path, err)
	}
	defer db.Close()
	var cp []byte
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta); b != nil {
			cp = bytes.Clone(b.Get(keyCheckpoint))
		}
		if cp == nil {
			return fmt.Errorf("%s holds no checkpoint", path)
		}
		return nil
	})
	return cp, err
}
