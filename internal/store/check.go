package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNoDatabase is wrapped by CheckFile's error for a file that does not
// exist.
var ErrNoDatabase = errors.New("does not exist")

// The parts of bbolt's on-disk format (go.etcd.io/bbolt, format version 2)
// that CheckFile reads: two meta pages at the start of the file, each a
// 16-byte page header and a 64-byte meta record ending in its FNV-1a
// checksum.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSize   = 64
)

// CheckFile checks, without opening it for writing, that path is a whole
// bbolt database: not missing (ErrNoDatabase), not empty, with a valid
// meta page, and as long as its own meta page says its pages reach. bbolt
// would start a new, empty database in a zero-length file, and read past
// the end of a truncated one (a panic or SIGBUS); the server must refuse
// both instead.
func CheckFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s %w", path, ErrNoDatabase)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if size == 0 {
		return fmt.Errorf("%s is empty (0 bytes)", path)
	}
	m, ok := readMeta(f, 0)
	if ok {
		// The second meta page follows the first; the newer one counts.
		if m1, ok1 := readMeta(f, int64(m.pageSize)); ok1 && m1.txid > m.txid {
			m = m1
		}
	} else {
		// The first meta page is damaged: look for the second at the
		// usual page sizes, as bbolt does.
		for _, ps := range []int64{4096, 8192, 16384, 32768, 65536} {
			if m, ok = readMeta(f, ps); ok && int64(m.pageSize) == ps {
				break
			}
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%s is not a certmesh database (no valid bbolt meta page in its %d bytes): damaged, or another file", path, size)
	}
	if need := int64(m.pages) * int64(m.pageSize); size < need {
		return fmt.Errorf("%s is truncated: %d bytes, but its pages reach %d bytes", path, size, need)
	}
	return nil
}

// Extent is how far into the file at path its database's pages reach
// (bbolt's high-water mark): bbolt grows a file ahead of use, so the bytes
// past the extent hold nothing, and only a cut inside it loses data.
func Extent(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	m, ok := readMeta(f, 0)
	if !ok {
		return 0, fmt.Errorf("%s: no valid bbolt meta page at its start", path)
	}
	if m1, ok1 := readMeta(f, int64(m.pageSize)); ok1 && m1.txid > m.txid {
		m = m1
	}
	return int64(m.pages) * int64(m.pageSize), nil
}

type boltMeta struct {
	pageSize uint32
	pages    uint64 // high-water mark: pages in use
	txid     uint64
}

// readMeta reads and checks the meta record of the page at off.
func readMeta(r io.ReaderAt, off int64) (boltMeta, bool) {
	var b [boltPageHeader + boltMetaSize]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return boltMeta{}, false
	}
	meta := b[boltPageHeader:]
	le := binary.LittleEndian // bbolt writes its structs in host order; certmesh runs on little-endian hosts
	if le.Uint32(meta[0:]) != boltMagic || le.Uint32(meta[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(meta[:56])
	if h.Sum64() != le.Uint64(meta[56:]) {
		return boltMeta{}, false
	}
	m := boltMeta{pageSize: le.Uint32(meta[8:]), pages: le.Uint64(meta[40:]), txid: le.Uint64(meta[48:])}
	if m.pageSize < 1024 || m.pageSize&(m.pageSize-1) != 0 || m.pages < 4 {
		return boltMeta{}, false
	}
	return m, true
}

// IssuedAny reports whether the database at path (checked by CheckFile)
// records any certificate. It opens the file read-only: nothing is written.
func IssuedAny(path string) (bool, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return false, fmt.Errorf("opening database %s: %w", path, err)
	}
	defer db.Close()
	var found bool
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketCerts); b != nil {
			k, _ := b.Cursor().First()
			found = k != nil
		}
		return nil
	})
	return found, err
}
