package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// exporter is what copying a whole store needs beyond Tx: the counters as
// they stand and the used-ID-token marks. Both backends' transactions
// implement it.
type exporter interface {
	counters() (addrIndex, crlNumber uint64, err error)
	idTokenMarks() (map[string]time.Time, error)
	putIDTokenMark(hash string, expires time.Time) error
}

// copyAll copies every record of src into dst (nonces excepted: they
// live for a minute), the counters and the used-ID-token marks.
func copyAll(dst, src Tx) error {
	sx, ok1 := src.(exporter)
	dx, ok2 := dst.(exporter)
	if !ok1 || !ok2 {
		return fmt.Errorf("copying a store: %T or %T cannot be copied", src, dst)
	}
	steps := []func() error{
		func() error { return copyEach(src.ListTokens, dst.PutToken) },
		func() error { return copyEach(src.ListDevices, dst.PutDevice) },
		func() error { return copyEach(src.ListCertificates, dst.PutCertificate) },
		func() error { return copyEach(src.ListUsers, dst.PutUser) },
		func() error { return copyEach(src.ListPending, dst.PutPending) },
		func() error { return copyEach(src.ListIntents, dst.PutIntent) },
		func() error {
			addr, crl, err := sx.counters()
			if err != nil {
				return err
			}
			if err := dst.RaiseAddressIndex(addr); err != nil {
				return err
			}
			return dst.RaiseCRLNumber(crl)
		},
		func() error {
			marks, err := sx.idTokenMarks()
			if err != nil {
				return err
			}
			for h, exp := range marks {
				if err := dx.putIDTokenMark(h, exp); err != nil {
					return err
				}
			}
			return nil
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("copying a store: %w", err)
		}
	}
	return nil
}

func copyEach[T any](list func() ([]T, error), put func(T) error) error {
	recs, err := list()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := put(r); err != nil {
			return err
		}
	}
	return nil
}

// Empty reports whether s holds no token, device, certificate, user,
// pending enrollment or intent.
func Empty(ctx context.Context, s Store) (empty bool, err error) {
	err = s.View(ctx, func(tx Tx) error {
		for _, n := range []func() (int, error){
			count(tx.ListTokens), count(tx.ListDevices), count(tx.ListCertificates),
			count(tx.ListUsers), count(tx.ListPending), count(tx.ListIntents),
		} {
			k, err := n()
			if err != nil || k > 0 {
				return err
			}
		}
		empty = true
		return nil
	})
	return empty, err
}

func count[T any](list func() ([]T, error)) func() (int, error) {
	return func() (int, error) { recs, err := list(); return len(recs), err }
}

// Import copies every record of the embedded store at path into dst, in
// one transaction of dst (all or nothing). dst must be empty.
func Import(ctx context.Context, dst Store, path string) error {
	if err := CheckFile(path); err != nil {
		return err
	}
	src, err := OpenBolt(path)
	if err != nil {
		return err
	}
	defer src.Close()
	empty, err := Empty(ctx, dst)
	if err != nil {
		return err
	}
	if !empty {
		return fmt.Errorf("importing %s: the database already holds records: import only into an empty database", path)
	}
	return src.View(ctx, func(stx Tx) error {
		return dst.Update(ctx, func(dtx Tx) error { return copyAll(dtx, stx) })
	})
}

// WriteTo writes a copy of the whole database to w as an embedded store
// file (what a backup holds: restore and catch-up read it like the
// embedded store's own snapshot), read in one snapshot.
func (p *Postgres) WriteTo(w io.Writer) (int64, error) {
	dir, err := os.MkdirTemp("", "certmesh-export-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "certmesh.db")
	dst, err := OpenBolt(path)
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	err = p.View(ctx, func(stx Tx) error {
		return dst.Update(ctx, func(dtx Tx) error { return copyAll(dtx, stx) })
	})
	if err != nil {
		dst.Close()
		return 0, fmt.Errorf("exporting %s: %w", p.where, err)
	}
	n, err := dst.WriteTo(w)
	return n, errorsJoin(err, dst.Close())
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func (t boltTx) counters() (addr, crl uint64, err error) {
	b := t.tx.Bucket(bucketMeta)
	read := func(k []byte) uint64 {
		if v := b.Get(k); len(v) == 8 {
			return binary.BigEndian.Uint64(v)
		}
		return 0
	}
	return read(keyAddrIndex), read(keyCRLNumber), nil
}

func (t boltTx) idTokenMarks() (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := t.tx.Bucket(bucketIDToks).ForEach(func(k, v []byte) error {
		var exp time.Time
		if err := exp.UnmarshalText(v); err != nil {
			return fmt.Errorf("decoding used ID token mark: %w", err)
		}
		out[string(k)] = exp
		return nil
	})
	return out, err
}

func (t boltTx) putIDTokenMark(hash string, expires time.Time) error {
	v, err := expires.MarshalText()
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketIDToks).Put([]byte(hash), v)
}

func (t *pgTx) counters() (addr, crl uint64, err error) {
	err = t.tx.QueryRow(t.ctx, `SELECT
		coalesce((SELECT value FROM certmesh_meta WHERE key = $1), 0),
		coalesce((SELECT value FROM certmesh_meta WHERE key = $2), 0)`, string(keyAddrIndex), string(keyCRLNumber)).Scan(&addr, &crl)
	if err != nil {
		return 0, 0, fmt.Errorf("reading counters: %w", err)
	}
	return addr, crl, nil
}

func (t *pgTx) idTokenMarks() (map[string]time.Time, error) {
	rows, err := t.tx.Query(t.ctx, `SELECT hash, expires_at FROM certmesh_id_tokens`)
	if err != nil {
		return nil, fmt.Errorf("listing used ID tokens: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var h string
		var exp time.Time
		if err := rows.Scan(&h, &exp); err != nil {
			return nil, err
		}
		out[h] = exp
	}
	return out, rows.Err()
}

func (t *pgTx) putIDTokenMark(hash string, expires time.Time) error {
	return t.exec("recording used ID token", `INSERT INTO certmesh_id_tokens VALUES ($1, $2)
		ON CONFLICT (hash) DO UPDATE SET expires_at = EXCLUDED.expires_at`, hash, expires)
}
