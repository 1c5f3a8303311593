package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

// logState is the agent's witness of the CA's log. The checkpoints it
// follows are the log's kind of signed document (docs): verified with a
// consistency proof from the CA's log, stored (witness.json) before the
// witness moves.
type logState struct {
	stateDir string
	witness  *translog.Witness
	client   *translog.Client // the CA's log endpoints (consistency proofs)
	log      *slog.Logger
	docs     *docHolder[checkpointDoc]

	mu       sync.Mutex
	alarm    string
	alarmAt  time.Time
	verified map[uint64]translog.Hash // older tree sizes proven consistent with the witness's history
	pending  []translog.Checkpoint    // seen, signed, not provable yet
}

// newLogState restores the witness for the log whose verifier key the CA
// gave at enrollment (nil if the CA runs no log).
func newLogState(stateDir, vkey string, client *translog.Client, log *slog.Logger) (*logState, error) {
	if vkey == "" {
		return nil, nil
	}
	v, err := translog.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("the CA's log key: %w", err)
	}
	ls := &logState{stateDir: stateDir, witness: translog.NewWitness(v), client: client, log: log, verified: map[uint64]translog.Hash{}}
	ls.docs = newDocHolder("log checkpoint", docKind[checkpointDoc](ls), time.Now, "")
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
	if cp, ok := ls.witness.Latest(); ok {
		ls.docs.adopt(&checkpointDoc{cp: cp}, cp.Signed)
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
	l.alarm, l.alarmAt = err.Error(), time.Now()
	l.mu.Unlock()
	l.log.Error("TRANSPARENCY LOG ALARM: the log shows two histories; the CA or the coordinator is lying", "err", err)
}

// raiseIfFork raises the alarm for an error that shows two histories.
func (l *logState) raiseIfFork(err error) {
	if r := translog.ReasonOf(err); r == translog.ReasonInconsistent || r == translog.ReasonSplitView {
		l.raise(err)
	}
}

// offerCheckpoint advances the witness to a checkpoint the coordinator
// relayed, with a consistency proof fetched from the CA's log endpoints.
func (l *logState) offerCheckpoint(ctx context.Context, signed []byte) {
	if l == nil {
		return
	}
	if err := l.docs.offer(ctx, signed, false); err != nil {
		l.log.Warn("checkpoint not taken", "err", err)
	}
}

// checkConsistent proves a signed checkpoint consistent with the
// witness's history, with a proof from the CA's log: a newer one becomes
// the latest, an older one must be a prefix of the latest. A proof that
// fails raises the alarm; one that cannot be fetched leaves cp unproven
// (an error), though its root is recorded so that a second root for the
// same size is caught.
//
// Checks run one at a time (the holder's turn): two at once (a renewal's
// inclusion check and a relayed checkpoint, say) read the same latest
// tree and fetch proofs from it, and the one answered second checked its
// proof against the tree the other had just moved to: a spurious
// malformed-proof ("consistency proof between equal trees") for the same
// tree, a false inconsistency alarm for a larger one.
func (l *logState) checkConsistent(ctx context.Context, cp translog.Checkpoint) error {
	return l.docs.offer(ctx, cp.Signed, false)
}

// seed starts an empty witness from a checkpoint the CA itself gave over
// the pinned TLS (the one in our own certificate's inclusion proof), so
// the first checkpoint a coordinator relays is not trusted blindly.
func (l *logState) seed(b *translog.InclusionBundle) {
	if l == nil || b == nil {
		return
	}
	if err := l.docs.offer(context.Background(), b.Checkpoint, false); err != nil {
		l.log.Warn("the CA's own checkpoint", "err", err)
	}
}

// checkLogged verifies a certificate's inclusion proof with the witness.
func (l *logState) checkLogged(der []byte, b *translog.InclusionBundle) error {
	if b == nil {
		return errors.New("no inclusion proof in the CA's transparency log")
	}
	err := l.witness.VerifyCertificate(der, *b)
	var sv *translog.SplitViewError
	if errors.As(err, &sv) {
		l.raise(err)
	}
	if err != nil {
		return err
	}
	// The proof is against a signed tree; that tree must be one history
	// with the one we follow, or a holder of the log key could show us a
	// fork that holds a certificate the real log lacks.
	return l.docs.offer(context.Background(), b.Checkpoint, false)
}

// status is what the witness knows; requireLogged and alarmPolicy are
// the agent's configuration.
func (l *logState) status(requireLogged bool, alarmPolicy DegradedPolicy) LogStatus {
	st := LogStatus{RequireLogged: requireLogged, AlarmPolicy: alarmPolicy}
	if l == nil {
		return st
	}
	st.Origin = l.witness.Verifier().Origin()
	if cp, ok := l.witness.Latest(); ok {
		st.Size, st.Root = cp.Size, cp.Root.String()
	}
	l.mu.Lock()
	st.Alarm, st.AlarmAt = l.alarm, l.alarmAt
	l.mu.Unlock()
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
