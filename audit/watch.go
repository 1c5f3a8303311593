package audit

import (
	"context"
	"errors"
	"time"
)

// WatchOptions says how Watch follows the log.
type WatchOptions struct {
	// Interval between polls (30 seconds if zero).
	Interval time.Duration
	// OnRecord gets each new entry as it is verified.
	OnRecord func(Record)
	// OnAlarm gets each alarm.
	OnAlarm func(Alarm)
	// OnError gets the polls that failed (network); Watch goes on.
	OnError func(error)
	// OnWarning gets warnings.
	OnWarning func(string)
}

// ErrAlarm is what Watch returns after an alarm about the log itself.
var ErrAlarm = errors.New("audit: alarm raised")

// Watch runs Verify, then polls the log and verifies each new checkpoint
// against the last one and each new entry, until ctx ends (it returns
// nil) or the log raises an alarm about itself (it returns ErrAlarm). The
// state file is updated after every verified poll.
func (a *Auditor) Watch(ctx context.Context, opts WatchOptions) error {
	if opts.Interval <= 0 {
		opts.Interval = 30 * time.Second
	}
	emit := func(rep *Report) bool {
		for _, w := range rep.Warnings {
			if opts.OnWarning != nil {
				opts.OnWarning(w)
			}
		}
		for _, al := range rep.Alarms {
			if opts.OnAlarm != nil {
				opts.OnAlarm(al)
			}
		}
		return rep.integrityAlarm()
	}
	rep, err := a.Verify(ctx)
	if err != nil {
		return err
	}
	if emit(rep) {
		return ErrAlarm
	}
	t := time.NewTicker(opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rep, err := a.poll(ctx, opts.OnRecord)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if opts.OnError != nil {
				opts.OnError(err)
			}
			continue
		}
		if emit(rep) {
			return ErrAlarm
		}
	}
}

// poll verifies the log's newest checkpoint against the last verified one
// and the entries in between.
func (a *Auditor) poll(ctx context.Context, onRecord func(Record)) (*Report, error) {
	rep := &Report{Origin: a.v.Origin(), LogKey: a.v.Key()}
	cp, ok, err := a.newest(ctx, rep)
	if err != nil {
		return nil, err
	}
	if !ok {
		return rep, nil
	}
	if a.cp.Size > 0 {
		al, err := a.checkExtends(ctx, a.cp, cp)
		if err != nil {
			return nil, err
		}
		rep.Checked = append(rep.Checked, a.cp.Size)
		if al != nil {
			rep.Alarms = append(rep.Alarms, *al)
			return rep, nil
		}
	}
	if err := a.sync(ctx, cp, rep, onRecord); err != nil {
		return nil, err
	}
	a.finish(rep)
	return rep, a.save(rep)
}
