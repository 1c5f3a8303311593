package translog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The bbolt buckets of a log file.
var (
	bucketMeta    = []byte("meta")    // origin, size, checkpoint
	bucketLeaves  = []byte("leaves")  // index (8 bytes BE) -> leaf
	bucketChains  = []byte("chains")  // index -> the chain served beside a certificate leaf
	bucketHashes  = []byte("hashes")  // tlog stored-hash index (8 bytes BE) -> 32-byte hash
	bucketLeafIdx = []byte("leafidx") // leaf hash -> index
)

var (
	keyOrigin     = []byte("origin")
	keySize       = []byte("size")
	keyCheckpoint = []byte("checkpoint")
	keyFormat     = []byte("format")
)

// storageFormat is the version of the file layout.
const storageFormat = 1

// MaxEntriesPerPage bounds the entries one Entries call or request returns.
const MaxEntriesPerPage = 256

// Log is the server half: an append-only log in its own bbolt file. Every
// append is one bbolt transaction that stores the leaf, the tree hashes
// it completes (O(log n), tlog's stored-hash layout) and a freshly signed
// checkpoint of the new tree, so that a crash leaves the log either before
// or after the append, with a checkpoint that matches it. It is safe for
// concurrent use.
type Log struct {
	db     *bolt.DB
	signer note.Signer
	origin string

	mu   sync.RWMutex // guards size and cp, the committed state's cache
	size uint64
	cp   []byte
}

// LoggedEntry is an entry as stored: its index, its leaf and, for a
// certificate, the chain served beside it.
type LoggedEntry struct {
	Index uint64
	Leaf  []byte
	Chain [][]byte
}

// Open opens (or creates, 0600) the log at path, signing checkpoints with
// signer. The signer's name must be origin, and an existing log must have
// been created with the same origin. Open checks the stored hashes against
// the stored checkpoint's root and signs a new checkpoint of the current
// tree (with signer, which may be a new key).
func Open(path string, signer note.Signer, origin string) (*Log, error) {
	if err := checkOrigin(origin); err != nil {
		return nil, err
	}
	if signer == nil {
		return nil, fmt.Errorf("transparency log: no signer")
	}
	if signer.Name() != origin {
		return nil, fmt.Errorf("transparency log: signer key is named %q, want the origin %q", signer.Name(), origin)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("transparency log: opening %s: %w", path, err)
	}
	l := &Log{db: db, signer: signer, origin: origin}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketLeaves, bucketChains, bucketHashes, bucketLeafIdx} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if got := meta.Get(keyOrigin); got == nil {
			if err := meta.Put(keyOrigin, []byte(origin)); err != nil {
				return err
			}
			if err := meta.Put(keyFormat, u64(storageFormat)); err != nil {
				return err
			}
			if err := meta.Put(keySize, u64(0)); err != nil {
				return err
			}
		} else if string(got) != origin {
			return fmt.Errorf("%s is the log %q, not %q", path, got, origin)
		}
		if f := meta.Get(keyFormat); len(f) != 8 {
			return fmt.Errorf("%s: stored format is malformed", path)
		} else if v := binary.BigEndian.Uint64(f); v != storageFormat {
			return fmt.Errorf("%s has log storage format %d, but this certmesh-server reads format %d: run the certmesh-server that wrote it", path, v, storageFormat)
		}
		size, err := readSize(tx)
		if err != nil {
			return err
		}
		root, err := tlog.TreeHash(int64(size), txHashes{tx})
		if err != nil {
			return fmt.Errorf("%s: tree of size %d: %w", path, size, err)
		}
		if old := meta.Get(keyCheckpoint); old != nil {
			text, _, ok := strings.Cut(string(old), "\n\n")
			cp, err := parseCheckpointText(text + "\n")
			if !ok || err != nil {
				return fmt.Errorf("%s: stored checkpoint is malformed", path)
			}
			if cp.Size != size || cp.Root != root {
				return fmt.Errorf("%s: stored checkpoint (size %d, root %s) does not match the stored tree (size %d, root %s)", path, cp.Size, cp.Root, size, root)
			}
		}
		cp, err := l.sign(size, root)
		if err != nil {
			return err
		}
		if err := meta.Put(keyCheckpoint, cp); err != nil {
			return err
		}
		l.size, l.cp = size, cp
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("transparency log: %w", err)
	}
	return l, nil
}

// Close closes the log's file.
func (l *Log) Close() error { return l.db.Close() }

// Origin is the log's origin.
func (l *Log) Origin() string { return l.origin }

// Size is the number of entries.
func (l *Log) Size() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.size
}

// Checkpoint returns the signed checkpoint of the current tree.
func (l *Log) Checkpoint() []byte {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return bytes.Clone(l.cp)
}

func (l *Log) sign(size uint64, root Hash) ([]byte, error) {
	cp, err := note.Sign(&note.Note{Text: checkpointText(l.origin, size, root)}, l.signer)
	if err != nil {
		return nil, fmt.Errorf("signing checkpoint: %w", err)
	}
	return cp, nil
}

// Append adds e to the log and returns its index, after the append and a
// checkpoint that includes it are durably stored. An entry whose leaf is
// already in the log is not added again: Append returns the index it has
// (so a retried append is harmless). Entries that do not encode, and
// certificates (or chain certificates) that do not parse as X.509, are
// refused with ReasonMalformedEntry.
func (l *Log) Append(ctx context.Context, e Entry) (uint64, error) {
	idx, err := l.AppendBatch(ctx, []Entry{e})
	if err != nil {
		return 0, err
	}
	return idx[0], nil
}

// AppendBatch appends entries in order in one transaction, under one new
// checkpoint, and returns their indexes (as Append would, one by one). If
// any entry is refused, nothing is appended.
func (l *Log) AppendBatch(ctx context.Context, entries []Entry) ([]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type prepared struct {
		leaf, chain []byte
		hash        Hash
	}
	ps := make([]prepared, len(entries))
	for i, e := range entries {
		if err := e.validate(); err != nil {
			return nil, err
		}
		leaf, err := e.MarshalLeaf()
		if err != nil {
			return nil, err
		}
		chain, err := encodeChain(e.Chain)
		if err != nil {
			return nil, err
		}
		ps[i] = prepared{leaf: leaf, chain: chain, hash: LeafHash(leaf)}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	indexes := make([]uint64, len(ps))
	var newSize uint64
	var newCP []byte
	err := l.db.Update(func(tx *bolt.Tx) error {
		n, err := readSize(tx)
		if err != nil {
			return err
		}
		start := n
		r := txHashes{tx}
		hb, lb, cb, ib := tx.Bucket(bucketHashes), tx.Bucket(bucketLeaves), tx.Bucket(bucketChains), tx.Bucket(bucketLeafIdx)
		for i, p := range ps {
			if got := ib.Get(p.hash[:]); got != nil {
				indexes[i] = binary.BigEndian.Uint64(got)
				continue
			}
			hashes, err := tlog.StoredHashesForRecordHash(int64(n), p.hash, r)
			if err != nil {
				return err
			}
			base := tlog.StoredHashIndex(0, int64(n))
			for j, hh := range hashes {
				if err := hb.Put(u64(uint64(base)+uint64(j)), bytes.Clone(hh[:])); err != nil {
					return err
				}
			}
			if err := lb.Put(u64(n), p.leaf); err != nil {
				return err
			}
			if p.chain != nil {
				if err := cb.Put(u64(n), p.chain); err != nil {
					return err
				}
			}
			if err := ib.Put(bytes.Clone(p.hash[:]), u64(n)); err != nil {
				return err
			}
			indexes[i] = n
			n++
		}
		if n == start {
			return nil // all already logged
		}
		root, err := tlog.TreeHash(int64(n), r)
		if err != nil {
			return err
		}
		cp, err := l.sign(n, root)
		if err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keySize, u64(n)); err != nil {
			return err
		}
		if err := meta.Put(keyCheckpoint, cp); err != nil {
			return err
		}
		newSize, newCP = n, cp
		return nil
	})
	if err != nil {
		return nil, &Error{Reason: ReasonServer, Err: fmt.Errorf("appending: %w", err)}
	}
	if newCP != nil {
		l.size, l.cp = newSize, newCP
	}
	return indexes, nil
}

// Lookup returns the index of the entry with this leaf hash.
func (l *Log) Lookup(leafHash Hash) (index uint64, ok bool, err error) {
	err = l.db.View(func(tx *bolt.Tx) error {
		if got := tx.Bucket(bucketLeafIdx).Get(leafHash[:]); got != nil {
			index, ok = binary.BigEndian.Uint64(got), true
		}
		return nil
	})
	return index, ok, err
}

// InclusionProof proves that entry index is in the tree of the first size
// entries (index < size <= Size()).
func (l *Log) InclusionProof(index, size uint64) ([][]byte, error) {
	return l.prove(func(tx *bolt.Tx, n uint64) ([]Hash, error) {
		if size > n || index >= size {
			return nil, fail(ReasonOutOfRange, "no entry %d in a tree of size %d (the log has %d entries)", index, size, n)
		}
		return tlog.ProveRecord(int64(size), int64(index), txHashes{tx})
	})
}

// ConsistencyProof proves that the tree of size newSize extends the tree
// of size oldSize (oldSize <= newSize <= Size()). From the empty tree, and
// between equal sizes, the proof is empty.
func (l *Log) ConsistencyProof(oldSize, newSize uint64) ([][]byte, error) {
	return l.prove(func(tx *bolt.Tx, n uint64) ([]Hash, error) {
		if oldSize > newSize || newSize > n {
			return nil, fail(ReasonOutOfRange, "no consistency proof from size %d to size %d (the log has %d entries)", oldSize, newSize, n)
		}
		if oldSize == 0 || oldSize == newSize {
			return []Hash{}, nil
		}
		return tlog.ProveTree(int64(newSize), int64(oldSize), txHashes{tx})
	})
}

// prove returns, in one read of the log, the proof proveIn makes in the
// tree of the log's n entries.
func (l *Log) prove(proveIn func(tx *bolt.Tx, n uint64) ([]Hash, error)) ([][]byte, error) {
	var proof [][]byte
	err := l.db.View(func(tx *bolt.Tx) error {
		n, err := readSize(tx)
		if err != nil {
			return err
		}
		p, err := proveIn(tx, n)
		if err != nil {
			return err
		}
		proof = proofBytes(p)
		return nil
	})
	return proof, wrapServer(err)
}

// InclusionBundle returns, in one consistent read, the current checkpoint
// and the proof that entry index is in its tree: what the CA hands out
// with a certificate.
func (l *Log) InclusionBundle(index uint64) (InclusionBundle, error) {
	var b InclusionBundle
	err := l.db.View(func(tx *bolt.Tx) error {
		n, err := readSize(tx)
		if err != nil {
			return err
		}
		if index >= n {
			return fail(ReasonOutOfRange, "no entry %d in a tree of size %d", index, n)
		}
		p, err := tlog.ProveRecord(int64(n), int64(index), txHashes{tx})
		if err != nil {
			return err
		}
		b = InclusionBundle{Index: index, TreeSize: n, Proof: proofBytes(p), Checkpoint: bytes.Clone(tx.Bucket(bucketMeta).Get(keyCheckpoint))}
		return nil
	})
	return b, wrapServer(err)
}

// Entries returns entries [start, end), at most MaxEntriesPerPage of them
// (fewer if end is larger): start < end <= Size() is required.
func (l *Log) Entries(start, end uint64) ([]LoggedEntry, error) {
	var out []LoggedEntry
	err := l.db.View(func(tx *bolt.Tx) error {
		n, err := readSize(tx)
		if err != nil {
			return err
		}
		if start >= end || end > n {
			return fail(ReasonOutOfRange, "no entries [%d, %d) in a log of %d entries", start, end, n)
		}
		end = min(end, start+MaxEntriesPerPage)
		leaves, chains := tx.Bucket(bucketLeaves), tx.Bucket(bucketChains)
		for i := start; i < end; i++ {
			leaf := leaves.Get(u64(i))
			if leaf == nil {
				return fmt.Errorf("entry %d is missing from storage", i)
			}
			chain, err := decodeChain(chains.Get(u64(i)))
			if err != nil {
				return fmt.Errorf("entry %d: %w", i, err)
			}
			out = append(out, LoggedEntry{Index: i, Leaf: bytes.Clone(leaf), Chain: chain})
		}
		return nil
	})
	return out, wrapServer(err)
}

// wrapServer marks storage failures as ReasonServer and keeps the package's
// own typed errors.
func wrapServer(err error) error {
	var e *Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	return &Error{Reason: ReasonServer, Err: err}
}

func readSize(tx *bolt.Tx) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get(keySize)
	if len(v) != 8 {
		return 0, fmt.Errorf("stored tree size is malformed")
	}
	n := binary.BigEndian.Uint64(v)
	if n >= 1<<62 {
		return 0, fmt.Errorf("stored tree size %d is out of range", n)
	}
	return n, nil
}

// txHashes reads stored hashes inside a bbolt transaction (it sees the
// transaction's own writes).
type txHashes struct{ tx *bolt.Tx }

func (r txHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	b := r.tx.Bucket(bucketHashes)
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		v := b.Get(u64(uint64(idx)))
		if len(v) != HashSize {
			return nil, fmt.Errorf("stored hash %d is missing or malformed", idx)
		}
		copy(out[i][:], v)
	}
	return out, nil
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// encodeChain stores a chain as a sequence of uint24-length-prefixed DERs
// (nil for no chain).
func encodeChain(chain [][]byte) ([]byte, error) {
	if len(chain) == 0 {
		return nil, nil
	}
	var b cryptobyte.Builder
	for _, der := range chain {
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(der) })
	}
	out, err := b.Bytes()
	if err != nil {
		return nil, fail(ReasonMalformedEntry, "encoding chain: %v", err)
	}
	return out, nil
}

func decodeChain(v []byte) ([][]byte, error) {
	if v == nil {
		return nil, nil
	}
	s := cryptobyte.String(v)
	var out [][]byte
	for !s.Empty() {
		var der cryptobyte.String
		if !s.ReadUint24LengthPrefixed(&der) {
			return nil, fmt.Errorf("stored chain is malformed")
		}
		out = append(out, bytes.Clone(der))
	}
	return out, nil
}
