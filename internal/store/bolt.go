package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/certmesh/certmesh/certs"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketTokens  = []byte("tokens")
	bucketNonces  = []byte("nonces")
	bucketDevices = []byte("devices")
	bucketCerts   = []byte("certificates")
	bucketMeta    = []byte("meta")
	bucketUsers   = []byte("users")
	bucketIDToks  = []byte("id-tokens")
	bucketPending = []byte("pending")
	bucketIntents = []byte("intents")
	keyAddrIndex  = []byte("address-index")
	keyCRLNumber  = []byte("crl-number")
)

// Bolt is the embedded store: one bbolt file, mode 0600.
type Bolt struct {
	db *bolt.DB
}

// OpenBolt opens (creating if needed) the database at path.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening database %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		fresh := tx.Bucket(bucketMeta) == nil
		for _, b := range append([][]byte{bucketTokens, bucketNonces, bucketDevices, bucketCerts, bucketMeta, bucketUsers, bucketIDToks, bucketPending, bucketIntents}, indexBuckets...) {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return migrate(tx, path, fresh)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising database %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// Close closes the database.
func (b *Bolt) Close() error { return b.db.Close() }

// Update implements Store.
func (b *Bolt) Update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// View implements Store.
func (b *Bolt) View(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) put(bucket []byte, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s record: %w", bucket, err)
	}
	return t.tx.Bucket(bucket).Put([]byte(key), data)
}

func (t boltTx) get(bucket []byte, key string, v any) error {
	data := t.tx.Bucket(bucket).Get([]byte(key))
	if data == nil {
		return fmt.Errorf("%s %q: %w", bucket, key, ErrNotFound)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decoding %s record %q: %w", bucket, key, err)
	}
	return nil
}

func (t boltTx) PutToken(tok Token) error { return t.put(bucketTokens, tok.ID, tok) }

func (t boltTx) GetToken(id string) (tok Token, err error) {
	err = t.get(bucketTokens, id, &tok)
	return tok, err
}

func (t boltTx) ListTokens() ([]Token, error) {
	return listSorted(t, bucketTokens, "token", func(a, b Token) bool { return a.CreatedAt.Before(b.CreatedAt) })
}

func (t boltTx) PutNonce(n Nonce) error {
	if t.tx.Bucket(bucketNonces).Get([]byte(n.Value)) != nil {
		return fmt.Errorf("nonce: %w", ErrExists)
	}
	return t.put(bucketNonces, n.Value, n)
}

func (t boltTx) TakeNonce(value string) (n Nonce, err error) {
	if err = t.get(bucketNonces, value, &n); err != nil {
		return n, err
	}
	return n, t.tx.Bucket(bucketNonces).Delete([]byte(value))
}

func (t boltTx) PurgeNonces(now time.Time) error {
	return t.deleteWhere(bucketNonces, func(v []byte) bool {
		var n Nonce
		return json.Unmarshal(v, &n) != nil || now.After(n.ExpiresAt)
	})
}

// deleteWhere deletes the records of bucket whose value matches.
func (t boltTx) deleteWhere(bucket []byte, match func(v []byte) bool) error {
	b := t.tx.Bucket(bucket)
	var stale [][]byte
	err := b.ForEach(func(k, v []byte) error {
		if match(v) {
			stale = append(stale, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (t boltTx) NextAddressIndex() (uint64, error) { return t.nextCounter(keyAddrIndex) }

func (t boltTx) NextCRLNumber() (uint64, error) { return t.nextCounter(keyCRLNumber) }

func (t boltTx) RaiseAddressIndex(atLeast uint64) error { return t.raiseCounter(keyAddrIndex, atLeast) }

func (t boltTx) RaiseCRLNumber(atLeast uint64) error { return t.raiseCounter(keyCRLNumber, atLeast) }

// raiseCounter sets a persistent counter to atLeast if it is below.
func (t boltTx) raiseCounter(key []byte, atLeast uint64) error {
	b := t.tx.Bucket(bucketMeta)
	if v := b.Get(key); len(v) == 8 && binary.BigEndian.Uint64(v) >= atLeast {
		return nil
	}
	return b.Put(key, binary.BigEndian.AppendUint64(nil, atLeast))
}

// nextCounter increments and returns a persistent counter.
func (t boltTx) nextCounter(key []byte) (uint64, error) {
	b := t.tx.Bucket(bucketMeta)
	var n uint64
	if v := b.Get(key); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	n++
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], n)
	return n, b.Put(key, buf[:])
}

func (t boltTx) ListCertificates() ([]CertRecord, error) {
	return listSorted(t, bucketCerts, "certificate", func(a, b CertRecord) bool { return a.IssuedAt.Before(b.IssuedAt) })
}

func (t boltTx) GetDevice(id certs.DeviceID) (d Device, err error) {
	err = t.get(bucketDevices, string(id), &d)
	return d, err
}

func (t boltTx) ListDevices() ([]Device, error) {
	return listSorted(t, bucketDevices, "device", func(a, b Device) bool { return a.EnrolledAt.Before(b.EnrolledAt) })
}

func (t boltTx) GetCertificate(serial string) (c CertRecord, err error) {
	err = t.get(bucketCerts, serial, &c)
	return c, err
}

func (t boltTx) PutUser(u User) error { return t.put(bucketUsers, string(u.ID), u) }

func (t boltTx) GetUser(id certs.UserID) (u User, err error) {
	err = t.get(bucketUsers, string(id), &u)
	return u, err
}

func (t boltTx) ListUsers() ([]User, error) {
	return listSorted(t, bucketUsers, "user", func(a, b User) bool { return a.FirstSeen.Before(b.FirstSeen) })
}

func (t boltTx) DeleteUser(id certs.UserID) error {
	b := t.tx.Bucket(bucketUsers)
	if b.Get([]byte(id)) == nil {
		return fmt.Errorf("user %q: %w", id, ErrNotFound)
	}
	return b.Delete([]byte(id))
}

func (t boltTx) MarkIDTokenUsed(hash string, expires, now time.Time) error {
	err := t.deleteWhere(bucketIDToks, func(v []byte) bool {
		var exp time.Time
		return exp.UnmarshalText(v) != nil || now.After(exp)
	})
	if err != nil {
		return err
	}
	b := t.tx.Bucket(bucketIDToks)
	if b.Get([]byte(hash)) != nil {
		return fmt.Errorf("ID token %s…: %w", hash[:min(12, len(hash))], ErrExists)
	}
	v, err := expires.MarshalText()
	if err != nil {
		return err
	}
	return b.Put([]byte(hash), v)
}

func (t boltTx) PutPending(p PendingEnrollment) error { return t.put(bucketPending, p.ID, p) }

func (t boltTx) GetPending(id string) (p PendingEnrollment, err error) {
	err = t.get(bucketPending, id, &p)
	return p, err
}

func (t boltTx) ListPending() ([]PendingEnrollment, error) {
	return listSorted(t, bucketPending, "pending enrollment", func(a, b PendingEnrollment) bool { return a.RequestedAt.Before(b.RequestedAt) })
}

// listSorted decodes every record of a bucket and sorts them with less.
func listSorted[T any](t boltTx, bucket []byte, what string, less func(a, b T) bool) ([]T, error) {
	var out []T
	err := t.tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		var r T
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decoding %s %q: %w", what, k, err)
		}
		out = append(out, r)
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return less(out[i], out[j]) })
	return out, err
}

func (t boltTx) PutIntent(in Intent) error { return t.put(bucketIntents, in.ID, in) }

func (t boltTx) ListIntents() ([]Intent, error) {
	return listSorted(t, bucketIntents, "intent", func(a, b Intent) bool { return a.CreatedAt.Before(b.CreatedAt) })
}

func (t boltTx) DeleteIntent(id string) error { return t.tx.Bucket(bucketIntents).Delete([]byte(id)) }
