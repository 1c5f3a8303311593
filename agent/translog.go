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
	"github.com/certmesh/certmesh/translog"
)

// witnessFile keeps the newest log checkpoint the agent verified, and the
// (size, root) pairs it saw, across restarts.
const witnessFile = "witness.json"

// userInclusionFile keeps the user certificate's inclusion proof.
const userInclusionFile = "user-inclusion.json"

// Reasons for refusing a peer (or its user) that is not in the log.
const (
	ReasonNotLogged     certs.Reason = "not-logged"      // no valid inclusion proof for the machine certificate
	ReasonUserNotLogged certs.Reason = "user-not-logged" // no valid inclusion proof for the user certificate (machine stays)
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
}

// logState is the agent's witness of the CA's log.
type logState struct {
	stateDir string
	witness  *translog.Witness
	client   *translog.Client // the CA's log endpoints (consistency proofs)

	mu      sync.Mutex
	alarm   string
	alarmAt time.Time
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
	ls := &logState{stateDir: stateDir, witness: translog.NewWitness(v), client: client}
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

func (l *logState) save() {
	data, err := json.Marshal(l.witness.State())
	if err == nil {
		err = writeAtomic(filepath.Join(l.stateDir, witnessFile), data, 0o600)
	}
	_ = err // best effort: the witness is rebuilt from the next checkpoint
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
	latest, ok := l.witness.Latest()
	var proof [][]byte
	if ok && cp.Size > latest.Size && latest.Size > 0 {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		proof, err = l.client.ConsistencyProof(pctx, latest.Size, cp.Size)
		cancel()
		if err != nil {
			// Can't check consistency now: still record what we saw, so
			// that a second root for this size is caught.
			if oerr := l.witness.Observe(cp); oerr != nil {
				a.logAlarm(oerr)
			}
			a.cfg.Logger.Warn("fetching a consistency proof", "err", err)
			return
		}
	}
	if err := l.witness.Advance(cp, proof); err != nil {
		switch translog.ReasonOf(err) {
		case translog.ReasonRollback:
			return // an older checkpoint relayed again: nothing to learn
		case translog.ReasonInconsistent, translog.ReasonSplitView:
			a.logAlarm(err)
		default:
			a.cfg.Logger.Warn("checkpoint refused", "err", err)
		}
		return
	}
	l.save()
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
	return err
}

func (a *Agent) logStatus() LogStatus {
	st := LogStatus{RequireLogged: !a.cfg.AllowUnlogged}
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
	return writeAtomic(filepath.Join(dir, userInclusionFile), data, 0o644)
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
