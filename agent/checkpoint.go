package agent

// The log checkpoint as a kind of signed document (dochold.go): verified
// with a consistency proof from the CA's log, stored in the witness's
// state before the witness moves, and installed by proving the
// checkpoints that were pending against it.

import (
	"context"
	"fmt"
	"math/big"
	"time"

	"github.com/certmesh/certmesh/translog"
)

// checkpointDoc is a signed checkpoint and the proof that it extends the
// one held (nil for the first, trusted on first use).
type checkpointDoc struct {
	cp    translog.Checkpoint
	proof [][]byte
}

// verify is the checkpoint's step of the holder: the first is trusted
// (the agent seeds its witness from the CA's own checkpoint at start), a
// newer one is returned with its consistency proof, an older one is
// proven a prefix of the latest and installs nothing.
func (l *logState) verify(ctx context.Context, signed []byte, _ *checkpointDoc, _ *big.Int, _ bool) (*checkpointDoc, error) {
	cp, err := l.witness.Verifier().ParseCheckpoint(signed)
	if err != nil {
		return nil, err
	}
	latest, ok := l.witness.Latest()
	if !ok {
		return &checkpointDoc{cp: cp}, nil
	}
	// Any second root for a size already seen is a split view.
	if err := l.witness.Observe(cp); err != nil {
		l.raise(err)
		return nil, err
	}
	if cp.Size == latest.Size {
		return nil, nil
	}
	l.mu.Lock()
	root, done := l.verified[cp.Size]
	l.mu.Unlock()
	if done && root == cp.Root {
		return nil, nil
	}
	proof, err := l.consistencyProof(ctx, cp, latest)
	if err != nil {
		return nil, err
	}
	if cp.Size < latest.Size {
		return nil, l.provePrefix(cp, latest, proof)
	}
	if err := l.witness.Verifier().VerifyConsistency(latest, cp, proof); err != nil {
		l.raiseIfFork(err)
		return nil, err
	}
	return &checkpointDoc{cp: cp, proof: proof}, nil
}

func (l *logState) version(d *checkpointDoc) *big.Int { return new(big.Int).SetUint64(d.cp.Size) }

// persist moves the witness, which happens only once its state is stored.
func (l *logState) persist(d *checkpointDoc, _ []byte) error {
	err := l.witness.AdvanceAndSave(d.cp, d.proof, l.save)
	l.raiseIfFork(err)
	return err
}

// install proves the checkpoints seen but not provable before against the
// new latest one.
func (l *logState) install(ctx context.Context, d, _ *checkpointDoc) {
	l.mu.Lock()
	l.verified[d.cp.Size] = d.cp.Root
	l.mu.Unlock()
	l.checkPending(ctx)
}

// consistencyProof fetches the proof between cp and latest from the CA's
// log. A checkpoint that cannot be proven yet (the CA's log is not that
// large, or unreachable) is kept pending.
func (l *logState) consistencyProof(ctx context.Context, cp, latest translog.Checkpoint) ([][]byte, error) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	proof, err := l.client.ConsistencyProof(pctx, min(cp.Size, latest.Size), max(cp.Size, latest.Size))
	if err != nil {
		l.addPending(cp)
		return nil, fmt.Errorf("cannot prove tree %d consistent with %d yet: %w", cp.Size, latest.Size, err)
	}
	return proof, nil
}

// provePrefix checks that the older cp is a prefix of latest and stores
// the roots seen with it.
func (l *logState) provePrefix(cp, latest translog.Checkpoint, proof [][]byte) error {
	if err := l.witness.Verifier().VerifyConsistency(cp, latest, proof); err != nil {
		l.raiseIfFork(err)
		return err
	}
	if err := l.save(l.witness.State()); err != nil {
		return err
	}
	l.mu.Lock()
	l.verified[cp.Size] = cp.Root
	l.mu.Unlock()
	return nil
}

// checkPending proves the checkpoints seen but not yet provable against
// the (new) latest one, now that the log has grown past them.
func (l *logState) checkPending(ctx context.Context) {
	latest, ok := l.witness.Latest()
	if !ok {
		return
	}
	l.mu.Lock()
	pending := l.pending
	l.pending = nil
	l.mu.Unlock()
	for _, p := range pending {
		if p.Size > latest.Size {
			l.addPending(p)
			continue
		}
		if p.Size == latest.Size {
			if p.Root != latest.Root {
				l.raise(&translog.SplitViewError{Origin: p.Origin, Size: p.Size, Roots: [2]translog.Hash{latest.Root, p.Root}})
			}
			continue
		}
		// A fork raises the alarm and one still unprovable is queued again
		// by consistencyProof; either way, say why it was not taken.
		proof, err := l.consistencyProof(ctx, p, latest)
		if err == nil {
			err = l.provePrefix(p, latest, proof)
		}
		if err != nil {
			l.log.Warn("pending checkpoint not taken", "size", p.Size, "err", err)
		}
	}
}

// addPending keeps a checkpoint to prove later (bounded).
func (l *logState) addPending(cp translog.Checkpoint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.pending {
		if p.Size == cp.Size && p.Root == cp.Root {
			return
		}
	}
	if len(l.pending) >= maxPendingCheckpoints {
		l.pending = l.pending[1:]
	}
	l.pending = append(l.pending, cp)
}

// maxPendingCheckpoints bounds the checkpoints kept to prove later.
const maxPendingCheckpoints = 64
