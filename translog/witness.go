package translog

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
)

// InclusionBundle is what an agent receives with a peer's certificate: the
// proof that the certificate is entry Index of the tree of size TreeSize,
// and the signed checkpoint of that tree.
type InclusionBundle struct {
	Index      uint64   `json:"index"`
	TreeSize   uint64   `json:"tree_size"`
	Proof      [][]byte `json:"proof"`
	Checkpoint []byte   `json:"checkpoint"`
}

// VerifyCertificateIncluded checks that the certificate der is in the log
// v verifies: b's checkpoint is signed by the log's key, its size is
// b.TreeSize, and b.Proof proves der's certificate leaf is entry b.Index
// of that tree. It says nothing about whether that checkpoint is
// consistent with others: see Witness.VerifyCertificate.
func VerifyCertificateIncluded(der []byte, b InclusionBundle, v *Verifier) error {
	_, err := verifyBundle(der, b, v)
	return err
}

func verifyBundle(der []byte, b InclusionBundle, v *Verifier) (Checkpoint, error) {
	cp, err := v.ParseCheckpoint(b.Checkpoint)
	if err != nil {
		return Checkpoint{}, err
	}
	if cp.Size != b.TreeSize {
		return Checkpoint{}, fail(ReasonMalformedBundle, "bundle says tree size %d, its checkpoint %d", b.TreeSize, cp.Size)
	}
	h, err := CertificateLeafHash(der)
	if err != nil {
		return Checkpoint{}, err
	}
	if err := v.VerifyInclusion(h, b.Index, b.Proof, cp); err != nil {
		return Checkpoint{}, err
	}
	return cp, nil
}

// MaxWitnessSizes bounds how many (size, root) pairs a Witness remembers
// to detect split views; past it, the smallest sizes are forgotten (a
// split view at a forgotten size goes unnoticed by this witness; the
// newest checkpoint and its consistency with every later one still hold).
const MaxWitnessSizes = 1 << 16

// Witness is the state an agent keeps about one log: the newest checkpoint
// it verified (Latest), which only moves forward along consistency proofs,
// and every (size, root) it saw in validly signed checkpoints, so that two
// roots for one size raise a *SplitViewError. It is safe for concurrent
// use.
type Witness struct {
	v *Verifier

	mu     sync.Mutex
	latest *Checkpoint
	seen   map[uint64]seenRoot
}

type seenRoot struct {
	root Hash
	note []byte // the signed checkpoint, kept for Latest only (evidence)
}

// NewWitness returns a witness that has seen nothing: the first
// checkpoint it is given is trusted as it is (trust on first use).
func NewWitness(v *Verifier) *Witness {
	return &Witness{v: v, seen: make(map[uint64]seenRoot)}
}

// Verifier is the verifier the witness checks with.
func (w *Witness) Verifier() *Verifier { return w.v }

// Latest is the newest checkpoint the witness accepted, if any.
func (w *Witness) Latest() (Checkpoint, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.latest == nil {
		return Checkpoint{}, false
	}
	return *w.latest, true
}

// reparse checks that cp is what its signed note says, signed by the log.
func (w *Witness) reparse(cp Checkpoint) (Checkpoint, error) {
	got, err := w.v.ParseCheckpoint(cp.Signed)
	if err != nil {
		return Checkpoint{}, err
	}
	if got.Origin != cp.Origin || got.Size != cp.Size || got.Root != cp.Root {
		return Checkpoint{}, fail(ReasonMalformedCheckpoint, "checkpoint fields do not match its signed note")
	}
	return got, nil
}

// observe records cp's (size, root) and returns a *SplitViewError if
// another root was seen for that size. Called with w.mu held.
func (w *Witness) observe(cp Checkpoint) error {
	if s, ok := w.seen[cp.Size]; ok {
		if s.root != cp.Root {
			return &SplitViewError{Origin: w.v.Origin(), Size: cp.Size, Roots: [2]Hash{s.root, cp.Root}, Notes: [2][]byte{s.note, cp.Signed}}
		}
		return nil
	}
	if len(w.seen) >= MaxWitnessSizes {
		smallest := uint64(1<<64 - 1)
		for size := range w.seen {
			if size < smallest && (w.latest == nil || size != w.latest.Size) {
				smallest = size
			}
		}
		delete(w.seen, smallest)
	}
	w.seen[cp.Size] = seenRoot{root: cp.Root}
	return nil
}

// Observe records a validly signed checkpoint without moving Latest (one
// that came with an inclusion proof, say). It returns a *SplitViewError if
// the witness saw another root for the same size, and a signature error
// if cp is not the log's.
func (w *Witness) Observe(cp Checkpoint) error {
	cp, err := w.reparse(cp)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.observe(cp)
}

// Advance moves Latest to cp, given the consistency proof from Latest's
// size to cp's. It refuses a checkpoint not signed by the log, a smaller
// tree (ReasonRollback), a different root for a size already seen
// (*SplitViewError) and a tree that does not extend Latest
// (ReasonInconsistent). The same checkpoint again is accepted and changes
// nothing. The first checkpoint a new witness sees is accepted without a
// proof.
func (w *Witness) Advance(cp Checkpoint, proof [][]byte) error {
	return w.AdvanceAndSave(cp, proof, nil)
}

// AdvanceAndSave is Advance that keeps the move only once save has stored
// the witness's new state (save is called with the witness locked, and
// only when Latest moves). If save fails the witness is left as it was and
// the error returned: a witness that cannot remember a checkpoint across
// a restart must not act on it, or after the restart it could be shown a
// fork of the history it had followed.
func (w *Witness) AdvanceAndSave(cp Checkpoint, proof [][]byte, save func(WitnessState) error) error {
	cp, err := w.reparse(cp)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.observe(cp); err != nil {
		return err
	}
	if w.latest != nil {
		if err := w.v.VerifyConsistency(*w.latest, cp, proof); err != nil {
			return err
		}
		if cp.Size == w.latest.Size {
			return nil
		}
	}
	// What the move changes, to undo it if save fails.
	prevLatest, prevNew := w.latest, w.seen[cp.Size]
	var prevOld seenRoot
	if w.latest != nil {
		prevOld = w.seen[w.latest.Size]
		w.seen[w.latest.Size] = seenRoot{root: prevOld.root} // drop the old evidence
	}
	w.latest = &cp
	w.seen[cp.Size] = seenRoot{root: cp.Root, note: cp.Signed}
	if save != nil {
		if err := save(w.stateLocked()); err != nil {
			w.seen[cp.Size] = prevNew
			if prevLatest != nil {
				w.seen[prevLatest.Size] = prevOld
			}
			w.latest = prevLatest
			return err
		}
	}
	return nil
}

// VerifyCertificate checks b for the certificate der as
// VerifyCertificateIncluded does and records b's checkpoint (Observe), so
// that a proof against a forked tree raises a *SplitViewError. It does not
// prove b's checkpoint consistent with Latest: a caller that follows the
// log must do that (with a consistency proof from the log) before trusting
// the certificate, as the agent does, or a holder of the log key can show
// it a fork.
func (w *Witness) VerifyCertificate(der []byte, b InclusionBundle) error {
	cp, err := verifyBundle(der, b, w.v)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.observe(cp)
}

// WitnessState is a Witness saved (JSON) to survive restarts.
type WitnessState struct {
	Origin string     `json:"origin"`
	Latest []byte     `json:"latest,omitempty"` // the signed checkpoint
	Seen   []SizeRoot `json:"seen,omitempty"`   // sorted by size
}

// SizeRoot is one (size, root) a witness saw.
type SizeRoot struct {
	Size uint64 `json:"size"`
	Root Hash   `json:"root"`
}

// State returns the witness's state for saving.
func (w *Witness) State() WitnessState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stateLocked()
}

func (w *Witness) stateLocked() WitnessState {
	s := WitnessState{Origin: w.v.Origin()}
	if w.latest != nil {
		s.Latest = bytes.Clone(w.latest.Signed)
	}
	for size, r := range w.seen {
		s.Seen = append(s.Seen, SizeRoot{Size: size, Root: r.root})
	}
	slices.SortFunc(s.Seen, func(a, b SizeRoot) int {
		switch {
		case a.Size < b.Size:
			return -1
		case a.Size > b.Size:
			return 1
		}
		return 0
	})
	return s
}

// RestoreWitness rebuilds a witness from a saved state, checking its
// latest checkpoint's signature again. A state of another log, a bad
// signature, duplicate sizes or a latest checkpoint that contradicts the
// recorded roots are ReasonMalformedWitnessFile (or the signature's reason).
func RestoreWitness(v *Verifier, s WitnessState) (*Witness, error) {
	if s.Origin != v.Origin() {
		return nil, fail(ReasonMalformedWitnessFile, "witness state of log %q, want %q", s.Origin, v.Origin())
	}
	if len(s.Seen) > MaxWitnessSizes {
		return nil, fail(ReasonMalformedWitnessFile, "witness state has %d sizes, at most %d", len(s.Seen), MaxWitnessSizes)
	}
	w := NewWitness(v)
	for _, sr := range s.Seen {
		if _, dup := w.seen[sr.Size]; dup {
			return nil, fail(ReasonMalformedWitnessFile, "witness state lists size %d twice", sr.Size)
		}
		w.seen[sr.Size] = seenRoot{root: sr.Root}
	}
	if s.Latest != nil {
		cp, err := v.ParseCheckpoint(s.Latest)
		if err != nil {
			return nil, fmt.Errorf("witness state's latest checkpoint: %w", err)
		}
		if r, ok := w.seen[cp.Size]; ok && r.root != cp.Root {
			return nil, fail(ReasonMalformedWitnessFile, "witness state's latest checkpoint contradicts its recorded root for size %d", cp.Size)
		}
		w.latest = &cp
		w.seen[cp.Size] = seenRoot{root: cp.Root, note: cp.Signed}
	}
	return w, nil
}
