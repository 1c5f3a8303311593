package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/certmesh/certmesh/certs"
	bolt "go.etcd.io/bbolt"
)

// The indexes of the embedded store (schema version 3), kept by PutDevice
// and PutCertificate in the same transaction as the records, so that an
// issuance or a revocation never scans every device or certificate. Each
// index entry is a key with an empty value:
//
//	device-keys   kind | key | 0 | device ID      active devices by key
//	cert-device   device ID | 0 | serial          certificates of a device
//	cert-user     user ID | 0 | serial            certificates of a user
//	revoked       notAfter (8 bytes) | serial     revoked certificates, by expiry;
//	              the value is the CRL entry (revokedEntry)
var (
	bucketIdxDevKeys    = []byte("idx-device-keys")
	bucketIdxCertDevice = []byte("idx-cert-device")
	bucketIdxCertUser   = []byte("idx-cert-user")
	bucketIdxRevoked    = []byte("idx-revoked")
	indexBuckets        = [][]byte{bucketIdxDevKeys, bucketIdxCertDevice, bucketIdxCertUser, bucketIdxRevoked}
)

func joinKey(parts ...string) []byte {
	var b []byte
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

func devKeyPrefix(k DeviceKey) []byte { return append(joinKey(string(k.Kind)+k.Value), 0) }

// expiryKey orders by notAfter (seconds, sign bit flipped so that the
// byte order is the numeric order), then serial.
func expiryKey(notAfter time.Time, serial string) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(notAfter.Unix())^(1<<63))
	return append(b, serial...)
}

func deviceIndexKeys(d Device) [][]byte {
	var out [][]byte
	for _, k := range d.Keys() {
		out = append(out, append(devKeyPrefix(k), d.ID...))
	}
	return out
}

// revokedEntry is what a CRL needs of a revoked certificate, kept as the
// value of its revoked index entry so that building a CRL decodes no
// certificate record.
type revokedEntry struct {
	RevokedAt time.Time `json:"revoked_at"`
	NotAfter  time.Time `json:"not_after"`
	Reason    int       `json:"reason,omitempty"`
}

func certIndexKeys(c CertRecord) map[string][][]byte {
	m := map[string][][]byte{}
	if c.DeviceID != "" {
		m[string(bucketIdxCertDevice)] = append(m[string(bucketIdxCertDevice)], joinKey(string(c.DeviceID), c.Serial))
	}
	if c.UserID != "" {
		m[string(bucketIdxCertUser)] = append(m[string(bucketIdxCertUser)], joinKey(string(c.UserID), c.Serial))
	}
	if !c.RevokedAt.IsZero() {
		m[string(bucketIdxRevoked)] = append(m[string(bucketIdxRevoked)], expiryKey(c.NotAfter, c.Serial))
	}
	return m
}

// reindex replaces the index entries old had (if any) by those of new.
func reindex(tx *bolt.Tx, old, new map[string][][]byte) error {
	for name, ks := range old {
		for _, k := range ks {
			if err := tx.Bucket([]byte(name)).Delete(k); err != nil {
				return err
			}
		}
	}
	for name, ks := range new {
		for _, k := range ks {
			if err := tx.Bucket([]byte(name)).Put(k, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func devIndex(d *Device) map[string][][]byte {
	if d == nil {
		return nil
	}
	return map[string][][]byte{string(bucketIdxDevKeys): deviceIndexKeys(*d)}
}

func (t boltTx) PutDevice(d Device) error {
	var old *Device
	if prev, err := t.GetDevice(d.ID); err == nil {
		old = &prev
	}
	if err := reindex(t.tx, devIndex(old), devIndex(&d)); err != nil {
		return fmt.Errorf("indexing device %s: %w", d.ID, err)
	}
	return t.put(bucketDevices, string(d.ID), d)
}

func (t boltTx) PutCertificate(c CertRecord) error {
	var old map[string][][]byte
	if prev, err := t.GetCertificate(c.Serial); err == nil {
		old = certIndexKeys(prev)
	}
	if err := t.indexCertificate(old, c); err != nil {
		return fmt.Errorf("indexing certificate %s: %w", c.Serial, err)
	}
	return t.put(bucketCerts, c.Serial, c)
}

// indexCertificate replaces the index entries old by those of c.
func (t boltTx) indexCertificate(old map[string][][]byte, c CertRecord) error {
	if err := reindex(t.tx, old, certIndexKeys(c)); err != nil {
		return err
	}
	if c.RevokedAt.IsZero() {
		return nil
	}
	v, err := json.Marshal(revokedEntry{RevokedAt: c.RevokedAt, NotAfter: c.NotAfter, Reason: c.RevokeReason})
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketIdxRevoked).Put(expiryKey(c.NotAfter, c.Serial), v)
}

// suffixesWithPrefix returns what follows prefix in the keys of an index
// bucket that start with it.
func (t boltTx) suffixesWithPrefix(bucket, prefix []byte) []string {
	var out []string
	c := t.tx.Bucket(bucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[len(prefix):]))
	}
	return out
}

func (t boltTx) ActiveDevicesByKey(k DeviceKey) ([]Device, error) {
	var out []Device
	for _, id := range t.suffixesWithPrefix(bucketIdxDevKeys, devKeyPrefix(k)) {
		d, err := t.GetDevice(certs.DeviceID(id))
		if err != nil {
			return nil, fmt.Errorf("device index names device %s: %w", id, err)
		}
		if d.HasKey(k) {
			out = append(out, d)
		}
	}
	return out, nil
}

func (t boltTx) certsBySerial(serials []string) ([]CertRecord, error) {
	out := make([]CertRecord, 0, len(serials))
	for _, s := range serials {
		c, err := t.GetCertificate(s)
		if err != nil {
			return nil, fmt.Errorf("certificate index names serial %s: %w", s, err)
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].IssuedAt.Before(out[j].IssuedAt) })
	return out, nil
}

func (t boltTx) CertificatesOfDevice(id certs.DeviceID) ([]CertRecord, error) {
	return t.certsBySerial(t.suffixesWithPrefix(bucketIdxCertDevice, append(joinKey(string(id)), 0)))
}

func (t boltTx) CertificatesOfUser(id certs.UserID) ([]CertRecord, error) {
	return t.certsBySerial(t.suffixesWithPrefix(bucketIdxCertUser, append(joinKey(string(id)), 0)))
}

func (t boltTx) RevokedCertificates(now time.Time) ([]CertRecord, error) {
	var out []CertRecord
	c := t.tx.Bucket(bucketIdxRevoked).Cursor()
	for k, v := c.Seek(expiryKey(now, "")); k != nil; k, v = c.Next() {
		var e revokedEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("decoding the revocation index entry of serial %s: %w", k[8:], err)
		}
		if now.After(e.NotAfter) {
			continue // expired within the second the seek rounded to
		}
		out = append(out, CertRecord{Serial: string(k[8:]), RevokedAt: e.RevokedAt, NotAfter: e.NotAfter, RevokeReason: e.Reason})
	}
	return out, nil
}

// buildIndexes fills the (empty) index buckets from the records: the
// migration to schema version 3.
func buildIndexes(tx *bolt.Tx) error {
	err := tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
		var d Device
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("decoding device %q: %w", k, err)
		}
		return reindex(tx, nil, devIndex(&d))
	})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketCerts).ForEach(func(k, v []byte) error {
		var c CertRecord
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("decoding certificate %q: %w", k, err)
		}
		return boltTx{tx}.indexCertificate(nil, c)
	})
}
