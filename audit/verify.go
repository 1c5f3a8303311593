package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/certmesh/certmesh/translog"
)

// Verify fetches the newest checkpoint, checks it against every checkpoint
// in the state file (a rewritten history), downloads every entry,
// recomputes the tree and compares its root with the signed one, and
// checks what every entry says. Findings are in the report's alarms; the
// error is for an audit that could not be completed. Unless the log
// itself raised an alarm, the state file then records the newest
// checkpoint (and, on the first run, the key).
func (a *Auditor) Verify(ctx context.Context) (*Report, error) {
	rep := &Report{}
	if err := a.setup(ctx, rep); err != nil {
		return rep, err
	}
	if a.v == nil {
		return rep, nil // no usable key: alarm raised
	}
	cp, ok, err := a.newest(ctx, rep)
	if !ok {
		return rep, err
	}

	// History: every checkpoint seen before.
	for _, sc := range a.state.Checkpoints {
		old := sc.checkpoint(a.v.Origin())
		al, err := a.checkExtends(ctx, old, cp)
		if err != nil {
			return rep, err
		}
		rep.Checked = append(rep.Checked, old.Size)
		if al != nil {
			rep.Alarms = append(rep.Alarms, *al)
		}
	}

	// Entries: all of them, from scratch.
	a.cp = translog.Checkpoint{Origin: a.v.Origin(), Root: emptyRoot()}
	a.tree = memTree{}
	a.an = newAnalysis(a.cfg.Roots)
	if err := a.sync(ctx, cp, rep, nil); err != nil {
		return rep, err
	}
	a.finish(rep)
	return rep, a.save(rep)
}

// setup decides the verifier key: pinned (Config, then state), else the
// log's own on first use. A served key other than the pinned one is an
// alarm.
func (a *Auditor) setup(ctx context.Context, rep *Report) error {
	pinned := a.cfg.LogKey
	if pinned == "" {
		pinned = a.state.LogKey
	}
	served, err := a.cfg.Client.Key(ctx)
	switch {
	case err != nil && pinned == "":
		return fmt.Errorf("fetching the log's key: %w", err)
	case err != nil:
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("could not fetch the log's key (%v): using the pinned key", err))
	case pinned == "":
		pinned = served
		rep.FirstRun = true
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("first run: trusting the log key %s served by %s; compare it with the key the CA's operators published", served, a.cfg.Client.URL()))
	case served != pinned:
		rep.Alarms = append(rep.Alarms, alarm(AlarmKeyChanged, "the log serves the key %s, the pinned key is %s", served, pinned))
	}
	v, err := translog.NewVerifier(pinned)
	if err != nil {
		if rep.FirstRun {
			rep.Alarms = append(rep.Alarms, alarm(AlarmBadCheckpoint, "the log serves an unusable key: %v", err))
			return nil
		}
		return fmt.Errorf("pinned log key: %w", err)
	}
	if a.state.Origin != "" && a.state.Origin != v.Origin() {
		return fmt.Errorf("the state file is about the log %q, the key about %q: use another state file", a.state.Origin, v.Origin())
	}
	a.v = v
	rep.Origin, rep.LogKey = v.Origin(), v.Key()
	return nil
}

// checkExtends checks that newer extends older with the log's consistency
// proof. A failed proof, or a log that refuses to give one for sizes it
// signed, is an alarm; an unreachable log is an error.
func (a *Auditor) checkExtends(ctx context.Context, older, newer translog.Checkpoint) (*Alarm, error) {
	evidence := []string{string(older.Signed), string(newer.Signed)}
	switch {
	case newer.Size < older.Size:
		al := alarm(AlarmRollback, "the newest checkpoint has %d entries, fewer than the %d of a checkpoint seen before", newer.Size, older.Size)
		al.Evidence = evidence
		return &al, nil
	case newer.Size == older.Size:
		if newer.Root != older.Root {
			al := alarm(AlarmHistoryRewritten, "split view: two checkpoints of size %d with different roots (%s seen before, %s now)", newer.Size, older.Root, newer.Root)
			al.Evidence = evidence
			return &al, nil
		}
		return nil, nil
	}
	proof, err := a.cfg.Client.ConsistencyProof(ctx, older.Size, newer.Size)
	if err != nil {
		var se *translog.StatusError
		var ae *translog.AnswerError
		if errors.As(err, &se) && se.Status >= 400 && se.Status < 500 || errors.As(err, &ae) {
			al := alarm(AlarmHistoryRewritten, "the log gives no consistency proof from size %d (seen before) to %d: %v", older.Size, newer.Size, err)
			al.Evidence = evidence
			return &al, nil
		}
		return nil, fmt.Errorf("fetching a consistency proof %d to %d: %w", older.Size, newer.Size, err)
	}
	if err := a.v.VerifyConsistency(older, newer, proof); err != nil {
		al := alarm(AlarmHistoryRewritten, "the tree of size %d does not extend the tree of size %d seen before: %v", newer.Size, older.Size, err)
		al.Evidence = evidence
		return &al, nil
	}
	return nil, nil
}

func (a *Auditor) finish(rep *Report) {
	rep.Entries = uint64(len(a.an.records))
	rep.Certificates, rep.Revocations, rep.Policies = a.an.counts.certificates, a.an.counts.revocations, a.an.counts.policies
	if rep.Alarms == nil {
		rep.Alarms = []Alarm{}
	}
	if rep.Checked == nil {
		rep.Checked = []uint64{}
	}
}

// newest fetches the log's newest checkpoint and verifies its signature
// into rep. ok is false when it could not be fetched (err) or did not
// verify (an AlarmBadCheckpoint in rep, err nil).
func (a *Auditor) newest(ctx context.Context, rep *Report) (cp translog.Checkpoint, ok bool, err error) {
	signed, err := a.cfg.Client.Checkpoint(ctx)
	if err != nil {
		return cp, false, fmt.Errorf("fetching the checkpoint: %w", err)
	}
	cp, err = a.v.ParseCheckpoint(signed)
	if err != nil {
		rep.Alarms = append(rep.Alarms, alarm(AlarmBadCheckpoint, "the newest checkpoint from %s: %v", a.cfg.Client.URL(), err))
		return cp, false, nil
	}
	rep.Checkpoint, rep.Size, rep.Root, rep.Signed = cp, cp.Size, cp.Root, string(cp.Signed)
	return cp, true, nil
}
