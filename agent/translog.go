package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/translog"
)

// witnessFile keeps the newest log checkpoint the agent verified, and the
// (size, root) pairs it saw, across restarts.
const witnessFile = "witness.json"

// userInclusionFile keeps the user certificate's inclusion proof.
const userInclusionFile = "user-inclusion.json"

// Reasons for refusing a peer (or its user) that is not in the log, or
// any new peer once the log raised an alarm (with LogAlarmPolicy
// DegradedRefuseNew).
const (
	ReasonNotLogged     certs.Reason = "not-logged"      // no valid inclusion proof for the machine certificate
	ReasonUserNotLogged certs.Reason = "user-not-logged" // no valid inclusion proof for the user certificate (machine stays)
	ReasonLogAlarm      certs.Reason = "log-alarm"       // a new peer while the log alarm stands
)

// LogStatus is what the agent knows of the CA's transparency log.
type LogStatus struct {
	Origin string `json:"origin,omitempty"`
	Size   uint64 `json:"size"`
	Root   string `json:"root,omitempty"`
	// RequireLogged: peers are accepted only with a valid inclusion proof.
	RequireLogged bool `json:"require_logged"`
	// Alarm is set when the log showed two histories (a split view) or a
	// checkpoint inconsistent with one seen before: evidence that the CA
	// or the coordinator is lying. It stays until the agent restarts.
	Alarm   string    `json:"alarm,omitempty"`
	AlarmAt time.Time `json:"alarm_at,omitzero"`
	// AlarmPolicy: whether new peers are accepted while the alarm stands.
	AlarmPolicy DegradedPolicy `json:"alarm_policy"`
}

// logState is the agent's witness of the CA's log.
type logState struct {
	stateDir string
	witness  *translog.Witness
	client   *translog.Client // the CA's log endpoints (consistency proofs)

	// turn lets one log check at a time read, prove and move the
	// witness (checkConsistent); a channel, so a waiter honours its ctx.
	turn chan struct{}

	mu       sync.Mutex
	alarm    string
	alarmAt  time.Time
	verified map[uint64]translog.Hash // older tree sizes proven consistent with the witness's history
	pending  []translog.Checkpoint    // seen, signed, not provable yet
}

// newLogState restores the witness for the log whose verifier key the CA
// gave at enrollment (nil if the CA runs no log).
func newLogState(stateDir, vkey string, client *translog.Client) (*logState, error) {
	if vkey == "" {
		return nil, nil
	}
	v, err := translog.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("the CA's log key: %w", err)
	}
	ls := &logState{stateDir: stateDir, witness: translog.NewWitness(v), client: client, verified: map[uint64]translog.Hash{}, turn: make(chan struct{}, 1)}
	data, err := os.ReadFile(filepath.Join(stateDir, witnessFile))
	if errors.Is(err, os.ErrNotExist) {
		return ls, nil
	} else if err != nil {
		return nil, err
	}
	var st translog.WitnessState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("reading %s: %w", witnessFile, err)
	}
	if ls.witness, err = translog.RestoreWitness(v, st); err != nil {
		return nil, fmt.Errorf("reading %s: %w", witnessFile, err)
	}
	return ls, nil
}

// save stores the witness's state. The witness only moves once this
// succeeded (translog.Witness.AdvanceAndSave): a checkpoint the agent
// cannot remember across a restart is not one it may act on, or after the
// restart it could be shown a fork of the history it had followed.
func (l *logState) save(st translog.WitnessState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding the log witness: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(l.stateDir, witnessFile), data, 0o600); err != nil {
		return fmt.Errorf("cannot store the log witness, so the checkpoint is not taken: %w", err)
	}
	return nil
}

// currentAlarm returns the alarm raised, "" if none (or no log).
func (l *logState) currentAlarm() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.alarm
}

// raise records an alarm (split view, inconsistent history).
func (l *logState) raise(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.alarm, l.alarmAt = err.Error(), time.Now()
}

// offerCheckpoint advances the witness to a checkpoint the coordinator
// relayed, with a consistency proof fetched from the CA's log endpoints.
func (a *Agent) offerCheckpoint(ctx context.Context, signed []byte) {
	l := a.tlog
	if l == nil {
		return
	}
	cp, err := l.witness.Verifier().ParseCheckpoint(signed)
	if err != nil {
		a.cfg.Logger.Warn("checkpoint refused", "err", err)
		return
	}
	if err := a.checkConsistent(ctx, cp); err != nil {
		a.cfg.Logger.Warn("checkpoint not taken", "size", cp.Size, "err", err)
	}
}

// checkConsistent proves a signed checkpoint consistent with the
// witness's history, with a proof from the CA's log: a newer one becomes
// the latest, an older one must be a prefix of the latest. A proof that
// fails raises the alarm; one that cannot be fetched leaves cp unproven
// (an error), though its root is recorded so that a second root for the
// same size is caught.
//
// Checks run one at a time: two at once (a renewal's inclusion check and
// a relayed checkpoint, say) read the same latest tree and fetch proofs
// from it, and the one answered second checked its proof against the tree
// the other had just moved to: a spurious malformed-proof ("consistency
// proof between equal trees") for the same tree, a false inconsistency
// alarm for a larger one.
func (a *Agent) checkConsistent(ctx context.Context, cp translog.Checkpoint) error {
	l := a.tlog
	select {
	case l.turn <- struct{}{}:
		defer func() { <-l.turn }()
	case <-ctx.Done():
		return fmt.Errorf("waiting to check log tree %d: %w", cp.Size, ctx.Err())
	}
	latest, ok := l.witness.Latest()
	if !ok {
		// Nothing held yet (no proof possible): trust on first use. The
		// agent seeds its witness from the CA's own checkpoint at start.
		return l.witness.AdvanceAndSave(cp, nil, l.save)
	}
	// Any second root for a size already seen is a split view.
	if err := l.witness.Observe(cp); err != nil {
		a.logAlarm(err)
		return err
	}
	if cp.Size == latest.Size {
		return nil
	}
	l.mu.Lock()
	root, done := l.verified[cp.Size]
	l.mu.Unlock()
	if done && root == cp.Root {
		return nil
	}
	advanced, err := a.proveConsistent(ctx, cp, latest)
	if err != nil {
		return err
	}
	if advanced {
		a.checkPending(ctx)
	}
	return nil
}

// proveConsistent fetches and checks the consistency proof between cp and
// latest; cp newer becomes the latest. A checkpoint that cannot be proven
// yet (the CA's log is not that large, or unreachable) is kept pending.
func (a *Agent) proveConsistent(ctx context.Context, cp, latest translog.Checkpoint) (advanced bool, err error) {
	l := a.tlog
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	older, newer := latest, cp
	if cp.Size < latest.Size {
		older, newer = cp, latest
	}
	proof, err := l.client.ConsistencyProof(pctx, older.Size, newer.Size)
	if err != nil {
		l.addPending(cp)
		return false, fmt.Errorf("cannot prove tree %d consistent with %d yet: %w", cp.Size, latest.Size, err)
	}
	if cp.Size > latest.Size {
		err = l.witness.AdvanceAndSave(cp, proof, l.save)
	} else {
		err = l.witness.Verifier().VerifyConsistency(older, newer, proof)
	}
	if err != nil {
		if r := translog.ReasonOf(err); r == translog.ReasonInconsistent || r == translog.ReasonSplitView {
			a.logAlarm(err)
		}
		return false, err
	}
	if cp.Size < latest.Size {
		// An older tree proven a prefix: store the roots seen with it.
		if err := l.save(l.witness.State()); err != nil {
			return false, err
		}
	}
	l.mu.Lock()
	l.verified[cp.Size] = cp.Root
	l.mu.Unlock()
	return cp.Size > latest.Size, nil
}

// checkPending proves the checkpoints seen but not yet provable against
// the (new) latest one, now that the log has grown past them.
func (a *Agent) checkPending(ctx context.Context) {
	l := a.tlog
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
				a.logAlarm(&translog.SplitViewError{Origin: p.Origin, Size: p.Size, Roots: [2]translog.Hash{latest.Root, p.Root}})
			}
			continue
		}
		// A fork raises the alarm and one still unprovable is queued again
		// inside proveConsistent; either way, say why it was not taken.
		if _, err := a.proveConsistent(ctx, p, latest); err != nil {
			a.cfg.Logger.Warn("pending checkpoint not taken", "size", p.Size, "err", err)
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

// seed starts an empty witness from a checkpoint the CA itself gave over
// the pinned TLS (the one in our own certificate's inclusion proof), so
// the first checkpoint a coordinator relays is not trusted blindly.
func (a *Agent) seedWitness(b *translog.InclusionBundle) {
	if a.tlog == nil || b == nil {
		return
	}
	cp, err := a.tlog.witness.Verifier().ParseCheckpoint(b.Checkpoint)
	if err != nil {
		a.cfg.Logger.Warn("the CA's own checkpoint does not verify", "err", err)
		return
	}
	if err := a.checkConsistent(context.Background(), cp); err != nil {
		a.cfg.Logger.Warn("the CA's own checkpoint", "err", err)
	}
}

func (a *Agent) logAlarm(err error) {
	a.tlog.raise(err)
	a.cfg.Logger.Error("TRANSPARENCY LOG ALARM: the log shows two histories; the CA or the coordinator is lying", "err", err)
}

// checkLogged verifies a certificate's inclusion proof with the witness.
func (a *Agent) checkLogged(der []byte, b *translog.InclusionBundle) error {
	if b == nil {
		return errors.New("no inclusion proof in the CA's transparency log")
	}
	err := a.tlog.witness.VerifyCertificate(der, *b)
	var sv *translog.SplitViewError
	if errors.As(err, &sv) {
		a.logAlarm(err)
	}
	if err != nil {
		return err
	}
	// The proof is against a signed tree; that tree must be one history
	// with the one we follow, or a holder of the log key could show us a
	// fork that holds a certificate the real log lacks.
	cp, err := a.tlog.witness.Verifier().ParseCheckpoint(b.Checkpoint)
	if err != nil {
		return err
	}
	return a.checkConsistent(context.Background(), cp)
}

func (a *Agent) logStatus() LogStatus {
	st := LogStatus{RequireLogged: !a.cfg.AllowUnlogged, AlarmPolicy: a.cfg.LogAlarmPolicy}
	if a.tlog == nil {
		return st
	}
	st.Origin = a.tlog.witness.Verifier().Origin()
	if cp, ok := a.tlog.witness.Latest(); ok {
		st.Size, st.Root = cp.Size, cp.Root.String()
	}
	a.tlog.mu.Lock()
	st.Alarm, st.AlarmAt = a.tlog.alarm, a.tlog.alarmAt
	a.tlog.mu.Unlock()
	return st
}

func saveUserInclusion(dir string, b *translog.InclusionBundle) error {
	if b == nil {
		return os.Remove(filepath.Join(dir, userInclusionFile))
	}
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, userInclusionFile), data, 0o644)
}

func loadUserInclusion(dir string) *translog.InclusionBundle {
	data, err := os.ReadFile(filepath.Join(dir, userInclusionFile))
	if err != nil {
		return nil
	}
	var b translog.InclusionBundle
	if json.Unmarshal(data, &b) != nil {
		return nil
	}
	return &b
}
