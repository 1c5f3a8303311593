package translog

import (
	"io"

	bolt "go.etcd.io/bbolt"
)

// WriteTo writes a consistent copy of the log's file to w, in one read
// transaction (appends wait for nothing): the copy is a log file on its
// own, at the size the log had when the copy began.
func (l *Log) WriteTo(w io.Writer) (n int64, err error) {
	err = l.db.View(func(tx *bolt.Tx) error { n, err = tx.WriteTo(w); return err })
	return n, err
}
