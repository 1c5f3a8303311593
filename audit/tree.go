package audit

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/certmesh/certmesh/translog"
)

// memTree holds the tree hashes of the verified entries in tlog's
// stored-hash layout: the auditor's own recomputation of the tree.
type memTree struct{ hashes []tlog.Hash }

func (m *memTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("audit: no tree hash %d", x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

func emptyRoot() translog.Hash { h, _ := tlog.TreeHash(0, nil); return h }

// sync downloads the entries from a.cp's size to cp's, recomputes the
// tree and, if its root is cp's, analyses them and moves a.cp to cp.
// onRecord, if set, gets each new record.
func (a *Auditor) sync(ctx context.Context, cp translog.Checkpoint, rep *Report, onRecord func(Record)) error {
	from := a.cp.Size
	if cp.Size <= from {
		return nil
	}
	keep := len(a.tree.hashes)
	var got []translog.LoggedEntry
	for next := from; next < cp.Size; {
		page, err := a.cfg.Client.Entries(ctx, next, cp.Size)
		if err != nil {
			var se *translog.StatusError
			var ae *translog.AnswerError
			if errors.As(err, &se) && se.Status >= 400 && se.Status < 500 || errors.As(err, &ae) {
				rep.Alarms = append(rep.Alarms, entryAlarm(AlarmEntriesMissing, next, "the checkpoint commits to %d entries, but the log does not serve entry %d: %v", cp.Size, next, err))
				a.tree.hashes = a.tree.hashes[:keep]
				return nil
			}
			return fmt.Errorf("fetching entries from %d: %w", next, err)
		}
		for _, e := range page {
			hs, err := tlog.StoredHashes(int64(e.Index), e.Leaf, &a.tree)
			if err != nil {
				return fmt.Errorf("audit: hashing entry %d: %w", e.Index, err)
			}
			a.tree.hashes = append(a.tree.hashes, hs...)
		}
		got = append(got, page...)
		next += uint64(len(page))
	}
	root, err := tlog.TreeHash(int64(cp.Size), &a.tree)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if root != cp.Root {
		msg := fmt.Sprintf("the %d entries served hash to %s, the signed checkpoint says %s", cp.Size, root, cp.Root)
		if bad, ok := a.firstBad(ctx, from, cp); ok {
			e := got[bad-from]
			al := entryAlarm(AlarmRootMismatch, bad, "%s: entry %d (leaf hash %s) is not the entry the log signed", msg, bad, translog.LeafHash(e.Leaf))
			rep.Alarms = append(rep.Alarms, al)
		} else {
			rep.Alarms = append(rep.Alarms, alarm(AlarmRootMismatch, "%s", msg))
		}
		a.tree.hashes = a.tree.hashes[:keep]
		return nil
	}
	for _, e := range got {
		al, warn := a.an.add(e)
		rep.Alarms = append(rep.Alarms, al...)
		rep.Warnings = append(rep.Warnings, warn...)
		if onRecord != nil {
			onRecord(a.an.records[len(a.an.records)-1])
		}
	}
	a.cp = cp
	return nil
}

// firstBad finds the first served entry in [from, cp.Size) that is not
// the one the log signed: the smallest k whose recomputed tree of k
// entries the log cannot prove cp extends is entry k-1. It uses O(log n)
// consistency proofs; it reports false if the log's proofs do not allow
// an answer.
func (a *Auditor) firstBad(ctx context.Context, from uint64, cp translog.Checkpoint) (uint64, bool) {
	good := func(k uint64) (bool, error) {
		if k == 0 {
			return true, nil
		}
		root, err := tlog.TreeHash(int64(k), &a.tree)
		if err != nil {
			return false, err
		}
		proof, err := a.cfg.Client.ConsistencyProof(ctx, k, cp.Size)
		if err != nil {
			return false, err
		}
		return a.v.VerifyConsistency(translog.Checkpoint{Origin: cp.Origin, Size: k, Root: root}, cp, proof) == nil, nil
	}
	lo, hi := from, cp.Size // good(lo) holds (verified before), good(hi) does not
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := good(mid)
		if err != nil {
			return 0, false
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi - 1, true
}
