package ca

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/certmesh/certmesh/translog"
)

// syncLog copies the state directory's log to a temporary file and
// appends to it, byte for byte, the entries src holds past it, then checks
// that the copy's tree is the one src's checkpoint (signed by the log's
// key) shows. It returns the open copy and its path; the state
// directory's log is not touched.
func syncLog(ctx context.Context, stateDir string, cfg *Config, src logSource, restored *RestoredState, res *CatchUpResult) (*translog.Log, string, error) {
	signer, vkey, err := logSigner(stateDir, cfg.TrustDomain)
	if err != nil {
		return nil, "", err
	}
	v, err := translog.NewVerifier(vkey)
	if err != nil {
		return nil, "", err
	}
	raw, err := src.Checkpoint(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("catch-up: fetching the log's checkpoint: %w", err)
	}
	want, err := v.ParseCheckpoint(raw)
	if err != nil {
		return nil, "", fmt.Errorf("catch-up: the copy's checkpoint is not this log's (signed by log.key): %w", err)
	}
	tmp, err := copyToTemp(filepath.Join(stateDir, logDBFile), stateDir, nil)
	if err != nil {
		return nil, "", err
	}
	l, err := translog.Open(tmp, signer, translog.Origin(cfg.TrustDomain))
	if err != nil {
		os.Remove(tmp)
		return nil, "", err
	}
	fail := func(err error) (*translog.Log, string, error) {
		l.Close()
		os.Remove(tmp)
		return nil, "", err
	}
	have := l.Size()
	if want.Size < have || want.Size < restored.LogSize {
		return fail(fmt.Errorf("catch-up: the copy of the log has %d entries, fewer than the backup's %d: it is older than the backup, give a newer one", want.Size, have))
	}
	for start := have; start < want.Size; {
		end := min(want.Size, start+translog.MaxEntriesPerPage)
		got, err := src.Entries(ctx, start, end)
		if err != nil {
			return fail(fmt.Errorf("catch-up: fetching log entries [%d, %d): %w", start, end, err))
		}
		es := make([]translog.Entry, 0, len(got))
		for i, le := range got {
			if le.Index != start+uint64(i) {
				return fail(fmt.Errorf("catch-up: the copy answered entry %d for %d", le.Index, start+uint64(i)))
			}
			e, err := translog.ParseLeaf(le.Leaf)
			if err != nil {
				return fail(fmt.Errorf("catch-up: log entry %d: %w", le.Index, err))
			}
			e.Chain = le.Chain
			es = append(es, e)
		}
		if len(es) == 0 {
			return fail(fmt.Errorf("catch-up: the copy answered no entries from %d", start))
		}
		if _, err := l.AppendBatch(ctx, es); err != nil {
			return fail(fmt.Errorf("catch-up: re-appending log entries from %d: %w", start, err))
		}
		start += uint64(len(es))
	}
	got, err := v.ParseCheckpoint(l.Checkpoint())
	if err != nil {
		return fail(err)
	}
	if got.Size != want.Size || got.Root != want.Root {
		return fail(fmt.Errorf("catch-up: the log rebuilt from the copy (size %d, root %s) is not the one its checkpoint shows (size %d, root %s): "+
			"the copy is not this log's history; nothing was changed", got.Size, got.Root, want.Size, want.Root))
	}
	res.Appended, res.LogSize = want.Size-have, want.Size
	return l, tmp, nil
}
