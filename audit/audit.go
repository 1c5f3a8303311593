// Package audit checks a certmesh CA's transparency log from the outside,
// with nothing but the CA's public log endpoints and its root certificate:
// the newest checkpoint is consistent with every checkpoint seen before
// (a state file keeps them), the entries the log serves hash to the root
// it signed, every logged certificate chains to the root with a valid
// certmesh profile, and every revocation refers to a logged certificate.
// It lists what the CA signed, follows new entries, and checks that
// certificates seen in use on the mesh are in the log.
//
// Findings are Alarms (docs/auditors.md says what each means); errors are
// for when the audit could not be done (network, state file).
package audit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/translog"
)

// Config is what an Auditor needs.
type Config struct {
	// Client fetches from the log's public endpoints.
	Client *translog.Client
	// Roots is the CA's root certificate(s) and trust domain.
	Roots *certs.Roots
	// StateFile keeps the pinned key and the verified checkpoints between
	// runs. Empty: keep no state (every run is a first run).
	StateFile string
	// LogKey pins the log's verifier key. Empty: the key in the state
	// file, else the key the log serves, trusted on first use.
	LogKey string
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Report is the outcome of one verification.
type Report struct {
	Origin     string              `json:"origin"`
	LogKey     string              `json:"log_key"`
	Checkpoint translog.Checkpoint `json:"-"`
	Size       uint64              `json:"size"`
	Root       translog.Hash       `json:"root"`
	// Signed is the newest checkpoint as the log signed it.
	Signed string `json:"checkpoint,omitempty"`
	// FirstRun: there was no pinned key; the log's own was trusted.
	FirstRun bool `json:"first_run"`
	// Checked lists the sizes of the earlier checkpoints the newest was
	// checked against.
	Checked      []uint64 `json:"checked"`
	Entries      uint64   `json:"entries"`
	Certificates int      `json:"certificates"`
	Revocations  int      `json:"revocations"`
	Policies     int      `json:"policies"`
	Alarms       []Alarm  `json:"alarms"`
	Warnings     []string `json:"warnings,omitempty"`
}

// OK reports whether the verification raised no alarm.
func (r *Report) OK() bool { return len(r.Alarms) == 0 }

func (r *Report) integrityAlarm() bool {
	return slices.ContainsFunc(r.Alarms, func(a Alarm) bool { return a.Kind.integrity() })
}

// Auditor audits one log. After a Verify it holds the verified entries
// (Records, CheckInUse). Not safe for concurrent use.
type Auditor struct {
	cfg   Config
	state *State
	v     *translog.Verifier

	// What is verified so far: the entries of cp, their tree hashes, and
	// what they say.
	cp   translog.Checkpoint
	tree memTree
	an   *analysis
}

// New returns an auditor. It loads the state file, if any.
func New(cfg Config) (*Auditor, error) {
	if cfg.Client == nil || cfg.Roots == nil {
		return nil, fmt.Errorf("audit: a log client and the root are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	st := &State{Version: StateVersion}
	if cfg.StateFile != "" {
		var err error
		if st, err = LoadState(cfg.StateFile); err != nil {
			return nil, err
		}
	}
	return &Auditor{cfg: cfg, state: st}, nil
}

// Verify runs one audit with a fresh auditor (see Auditor.Verify).
func Verify(ctx context.Context, c *translog.Client, roots *certs.Roots, stateFile string) (*Report, error) {
	a, err := New(Config{Client: c, Roots: roots, StateFile: stateFile})
	if err != nil {
		return nil, err
	}
	return a.Verify(ctx)
}

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
	signed, err := a.cfg.Client.Checkpoint(ctx)
	if err != nil {
		return rep, fmt.Errorf("fetching the checkpoint: %w", err)
	}
	cp, err := a.v.ParseCheckpoint(signed)
	if err != nil {
		rep.Alarms = append(rep.Alarms, alarm(AlarmBadCheckpoint, "the newest checkpoint from %s: %v", a.cfg.Client.URL(), err))
		return rep, nil
	}
	rep.Checkpoint, rep.Size, rep.Root, rep.Signed = cp, cp.Size, cp.Root, string(cp.Signed)

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

func emptyRoot() translog.Hash { h, _ := tlog.TreeHash(0, nil); return h }

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

// save records the verified checkpoint in the state file, unless the log
// raised an alarm about itself.
func (a *Auditor) save(rep *Report) error {
	if a.cfg.StateFile == "" || rep.integrityAlarm() || a.v == nil || a.cp.Size != rep.Size {
		return nil
	}
	a.state.Origin, a.state.LogKey = a.v.Origin(), a.v.Key()
	now := a.cfg.Now().UTC()
	a.state.record(a.cp, now)
	a.state.LastVerified = now
	return a.state.Save(a.cfg.StateFile)
}

// Records returns the records of the verified entries, in log order, with
// their revocation status.
func (a *Auditor) Records() []Record {
	if a.an == nil {
		return nil
	}
	return slices.Clone(a.an.records)
}

// List runs Verify and returns the records that took effect at or after
// since (all of them for the zero time).
func (a *Auditor) List(ctx context.Context, since time.Time) ([]Record, *Report, error) {
	rep, err := a.Verify(ctx)
	if err != nil {
		return nil, rep, err
	}
	return Since(a.Records(), since), rep, nil
}

// Since returns the records that took effect at or after t.
func Since(records []Record, t time.Time) []Record {
	var out []Record
	for _, r := range records {
		if !r.Time.Before(t) {
			out = append(out, r)
		}
	}
	return out
}

// CheckInUse checks a certificate seen in use on the mesh (a peer's
// machine or user certificate) against the entries verified so far: nil
// if it is logged, else an AlarmNotLogged alarm. Run Verify first (and
// again if the certificate may be newer than the last verified
// checkpoint).
func (a *Auditor) CheckInUse(der []byte) *Alarm {
	h, err := translog.CertificateLeafHash(der)
	if err == nil && a.an != nil {
		if _, ok := a.an.byLeaf[h]; ok {
			return nil
		}
	}
	desc := "an unparseable certificate"
	if c, err := certs.ParseBundle(certs.WireBundle{Machine: der}); err == nil {
		m := c.Machine
		desc = fmt.Sprintf("certificate serial %s", m.SerialNumber.Text(16))
		if len(m.URIs) > 0 {
			desc += " for " + m.URIs[0].String()
		}
		if len(m.EmailAddresses) > 0 {
			desc += " (" + m.EmailAddresses[0] + ")"
		}
		desc += fmt.Sprintf(", valid %s to %s", m.NotBefore.UTC().Format(time.RFC3339), m.NotAfter.UTC().Format(time.RFC3339))
	}
	al := alarm(AlarmNotLogged, "%s is in use on the mesh but is not in the log (verified up to %d entries)", desc, a.cp.Size)
	return &al
}

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
	signed, err := a.cfg.Client.Checkpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetching the checkpoint: %w", err)
	}
	cp, err := a.v.ParseCheckpoint(signed)
	if err != nil {
		rep.Alarms = append(rep.Alarms, alarm(AlarmBadCheckpoint, "the newest checkpoint from %s: %v", a.cfg.Client.URL(), err))
		return rep, nil
	}
	rep.Checkpoint, rep.Size, rep.Root, rep.Signed = cp, cp.Size, cp.Root, string(cp.Signed)
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

// HTTPClient returns an HTTP client for the CA's log endpoints over TLS:
// the server must present a certificate for certs.ServerName(trust
// domain) chaining to roots, whatever address is dialled. (A plain
// http:// log URL needs no TLS: use http.DefaultClient or nil.)
func HTTPClient(roots *certs.Roots, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots.Pool(),
		ServerName: certs.ServerName(roots.TrustDomain),
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}
