package audit

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/translog"
	"github.com/certmesh/certmesh/tstest/testca"
)

func TestVerifyHonestLog(t *testing.T) {
	f := newFixture(t)
	f.populate(f.log, 6)
	a, rep := f.verify(f.state)
	mustOK(t, rep)
	if !rep.FirstRun || rep.Size != f.log.Size() || rep.Certificates != 9 || rep.Revocations != 1 || rep.Policies != 1 {
		t.Fatalf("report %+v", rep)
	}
	recs := a.Records()
	if len(recs) != int(f.log.Size()) {
		t.Fatalf("%d records for %d entries", len(recs), f.log.Size())
	}
	// The first machine is decoded and marked revoked by the last entry.
	m := recs[0]
	id, err := certs.Verify(f.machines[0], f.ca.Roots(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindMachineCertificate || m.DeviceID != string(id.DeviceID) || m.Hostname != "hosta" ||
		m.WireGuardKey != id.WireGuardKey.String() || m.Attestation != "token" || len(m.Addresses) != 2 ||
		m.SPIFFEID != certs.DeviceURI(td, id.DeviceID).String() || m.Serial != id.Serial {
		t.Fatalf("machine record %+v, identity %+v", m, id)
	}
	last := recs[len(recs)-1]
	if !m.Revoked || m.RevokedBy == nil || *m.RevokedBy != last.Index || last.Kind != KindRevocation || last.Revokes == nil || *last.Revokes != 0 {
		t.Fatalf("revocation not linked: %+v / %+v", m, last)
	}
	// A user certificate: full check with its machine certificate.
	u := recs[2]
	if u.Kind != KindUserCertificate || u.Email == "" || u.UserID == "" || !slices.Equal(u.Groups, []string{"eng"}) || u.DeviceID != recs[1].DeviceID {
		t.Fatalf("user record %+v", u)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "first run") {
		t.Fatalf("warnings %q", rep.Warnings)
	}

	// The state file: 0600, the key pinned, the checkpoint recorded.
	fi, err := os.Stat(f.state)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v", fi.Mode().Perm())
	}
	st, err := LoadState(f.state)
	if err != nil || st.LogKey != f.vkey || len(st.Checkpoints) != 1 || st.Checkpoints[0].Size != rep.Size {
		t.Fatalf("state %+v, %v", st, err)
	}

	// The log grows; the next run checks the new checkpoint against the
	// recorded one.
	f.populate(f.log, 2)
	_, rep2 := f.verify(f.state)
	mustOK(t, rep2)
	if rep2.FirstRun || !slices.Equal(rep2.Checked, []uint64{rep.Size}) || rep2.Size != f.log.Size() {
		t.Fatalf("second run %+v", rep2)
	}
	st, _ = LoadState(f.state)
	if len(st.Checkpoints) != 2 {
		t.Fatalf("state has %d checkpoints, want 2", len(st.Checkpoints))
	}

	// List: since a time after everything lists nothing; the zero time
	// everything.
	recsAll, _, err := f.auditor("").List(context.Background(), time.Time{})
	if err != nil || len(recsAll) != int(f.log.Size()) {
		t.Fatalf("List: %d, %v", len(recsAll), err)
	}
	if got := Since(recsAll, time.Now().Add(time.Hour)); len(got) != 0 {
		t.Fatalf("Since(future) = %d records", len(got))
	}
	// JSON lines round-trip.
	var b strings.Builder
	if err := WriteRecords(&b, recsAll[:2], true); err != nil {
		t.Fatal(err)
	}
	var back Record
	if err := json.Unmarshal([]byte(strings.Split(b.String(), "\n")[0]), &back); err != nil || back.DeviceID != m.DeviceID {
		t.Fatalf("JSON record: %v %+v", err, back)
	}
}

// TestDetectsRemovedEntry: the log keeps its signed checkpoint but no
// longer serves one entry.
func TestDetectsRemovedEntry(t *testing.T) {
	f := newFixture(t)
	f.populate(f.log, 5)
	const removed = 3
	n := f.log.Size()

	// The entry is dropped and the following ones renumbered, as if it
	// had never been appended.
	f.serveHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != translog.PathEntries {
			f.handlerOf(f.log).ServeHTTP(w, r)
			return
		}
		all, _ := f.log.Entries(0, n)
		all = slices.Delete(all, removed, removed+1)
		var resp translog.EntriesResponse
		for i, e := range all {
			resp.Entries = append(resp.Entries, translog.WireEntry{Index: uint64(i), Leaf: e.Leaf, Chain: e.Chain})
		}
		var start uint64
		for _, c := range r.URL.Query()["start"][0] {
			start = start*10 + uint64(c-'0')
		}
		if start >= uint64(len(resp.Entries)) {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(translog.ErrorResponse{Error: "start is beyond the tree size"})
			return
		}
		resp.Entries = resp.Entries[start:]
		json.NewEncoder(w).Encode(resp)
	}))
	_, rep := f.verify("")
	if al := hasAlarm(rep, AlarmEntriesMissing); al == nil || al.Index == nil || *al.Index != n-1 {
		t.Fatalf("renumbered removal: want %s at %d, got %+v", AlarmEntriesMissing, n-1, rep.Alarms)
	}

	// The entry is dropped, leaving a gap in the numbering.
	f.serveHandler(rewriteEntries(f.handlerOf(f.log), func(resp *translog.EntriesResponse) {
		resp.Entries = slices.DeleteFunc(resp.Entries, func(e translog.WireEntry) bool { return e.Index == removed })
	}))
	_, rep = f.verify("")
	if hasAlarm(rep, AlarmEntriesMissing) == nil {
		t.Fatalf("removal with a gap: got %+v", rep.Alarms)
	}

	// The entry is dropped and the last one served twice to keep the
	// count: the entries no longer hash to the signed root, and the
	// auditor names the first one that differs.
	f.serveHandler(rewriteEntries(f.handlerOf(f.log), func(resp *translog.EntriesResponse) {
		for i := range resp.Entries {
			if resp.Entries[i].Index >= removed && resp.Entries[i].Index+1 < n {
				next, _ := f.log.Entries(resp.Entries[i].Index+1, resp.Entries[i].Index+2)
				resp.Entries[i].Leaf = next[0].Leaf
			}
		}
	}))
	_, rep = f.verify("")
	if al := hasAlarm(rep, AlarmRootMismatch); al == nil || al.Index == nil || *al.Index != removed {
		t.Fatalf("removal keeping the count: want %s at %d, got %+v", AlarmRootMismatch, removed, rep.Alarms)
	}

	// The operator, holding the log key, rebuilds the log without the
	// entry and appends on: consistent in itself, so only an auditor with
	// a state file from before sees it.
	f.serve(f.log)
	_, rep = f.verify(f.state)
	mustOK(t, rep)
	rebuilt := f.openLog()
	all, _ := f.log.Entries(0, n)
	for i, e := range all {
		if i == removed {
			continue
		}
		entry, _ := translog.ParseLeaf(e.Leaf)
		entry.Chain = e.Chain
		f.append(rebuilt, entry)
	}
	f.append(rebuilt, translog.PolicyEntry(2, []byte("policy v2"), time.Now()), translog.PolicyEntry(3, []byte("policy v3"), time.Now()))
	f.serve(rebuilt)
	_, fresh := f.verify("")
	mustOK(t, fresh) // without history, a rebuilt log is a valid log
	_, rep = f.verify(f.state)
	if al := hasAlarm(rep, AlarmHistoryRewritten); al == nil || len(al.Evidence) != 2 {
		t.Fatalf("rebuilt log with state: got %+v", rep.Alarms)
	}
}

// TestDetectsChangedEntry: the log serves one entry changed (a machine
// certificate swapped for another the same CA issued, say with an
// attacker's WireGuard key).
func TestDetectsChangedEntry(t *testing.T) {
	f := newFixture(t)
	f.populate(f.log, 5)
	const changed = 4
	evil, _ := f.ca.IssueMachine(t, f.ca.NewProfile(t, "evil"))
	f.serveHandler(rewriteEntries(f.handlerOf(f.log), func(resp *translog.EntriesResponse) {
		for i := range resp.Entries {
			if resp.Entries[i].Index == changed {
				leaf, _ := translog.CertificateEntry(evil.Machine.Raw).MarshalLeaf()
				resp.Entries[i].Leaf = leaf
			}
		}
	}))
	a, rep := f.verify(f.state)
	al := hasAlarm(rep, AlarmRootMismatch)
	if al == nil || al.Index == nil || *al.Index != changed {
		t.Fatalf("want %s at entry %d, got %+v", AlarmRootMismatch, changed, rep.Alarms)
	}
	// Nothing from the tampered answer is taken as verified or recorded.
	if len(a.Records()) != 0 {
		t.Fatalf("%d records kept from a log whose root does not match", len(a.Records()))
	}
	if _, err := os.Stat(f.state); !os.IsNotExist(err) {
		t.Fatalf("state saved after a root mismatch: %v", err)
	}

	// A single flipped byte inside a leaf is found the same way.
	f.serveHandler(rewriteEntries(f.handlerOf(f.log), func(resp *translog.EntriesResponse) {
		for i := range resp.Entries {
			if resp.Entries[i].Index == 1 {
				resp.Entries[i].Leaf[len(resp.Entries[i].Leaf)-1] ^= 1
			}
		}
	}))
	_, rep = f.verify("")
	if al := hasAlarm(rep, AlarmRootMismatch); al == nil || al.Index == nil || *al.Index != 1 {
		t.Fatalf("flipped byte: got %+v", rep.Alarms)
	}
}

// TestDetectsRewrittenHistory: after an `audit verify` recorded a
// checkpoint, the log is replaced by another history signed with the same
// key: longer, the same size, or shorter.
func TestDetectsRewrittenHistory(t *testing.T) {
	f := newFixture(t)
	f.populate(f.log, 4)
	_, rep := f.verify(f.state)
	mustOK(t, rep)
	before, _ := os.ReadFile(f.state)
	n := f.log.Size()
	all, _ := f.log.Entries(0, n)

	rebuild := func(keep int, extra ...translog.Entry) *translog.Log {
		l := f.openLog()
		for _, e := range all[:keep] {
			entry, _ := translog.ParseLeaf(e.Leaf)
			entry.Chain = e.Chain
			f.append(l, entry)
		}
		if len(extra) > 0 {
			f.append(l, extra...)
		}
		return l
	}
	other, _ := f.ca.IssueMachine(t, f.ca.NewProfile(t, "other"))
	otherEntry := translog.CertificateEntry(other.Machine.Raw, other.Intermediates[0].Raw)

	cases := []struct {
		name string
		log  *translog.Log
		want AlarmKind
	}{
		{"longer, diverging", rebuild(2, otherEntry, translog.PolicyEntry(5, []byte("x"), time.Now()), translog.PolicyEntry(6, []byte("y"), time.Now()), translog.PolicyEntry(7, []byte("z"), time.Now()), translog.PolicyEntry(8, []byte("w"), time.Now()), translog.PolicyEntry(9, []byte("v"), time.Now()), translog.PolicyEntry(10, []byte("u"), time.Now())), AlarmHistoryRewritten},
		{"same size (split view)", rebuild(int(n)-1, otherEntry), AlarmHistoryRewritten},
		{"shorter", rebuild(int(n) - 2), AlarmRollback},
	}
	for _, c := range cases {
		f.serve(c.log)
		_, rep := f.verify(f.state)
		al := hasAlarm(rep, c.want)
		if al == nil || len(al.Evidence) != 2 {
			t.Fatalf("%s: want %s with evidence, got %+v", c.name, c.want, rep.Alarms)
		}
		// The evidence is two checkpoints signed by the log's key.
		v, _ := translog.NewVerifier(f.vkey)
		for _, e := range al.Evidence {
			if _, err := v.ParseCheckpoint([]byte(e)); err != nil {
				t.Fatalf("%s: evidence does not verify: %v", c.name, err)
			}
		}
		after, _ := os.ReadFile(f.state)
		if string(after) != string(before) {
			t.Fatalf("%s: the state file recorded a rewritten history", c.name)
		}
	}

	// The honest log again: still fine, the alarm was about the other.
	f.serve(f.log)
	_, rep = f.verify(f.state)
	mustOK(t, rep)
}

// TestDetectsCertificateNotLogged: a certificate in use on the mesh (the
// intermediate signed it) that the log never saw.
func TestDetectsCertificateNotLogged(t *testing.T) {
	f := newFixture(t)
	f.populate(f.log, 3)
	a, rep := f.verify("")
	mustOK(t, rep)
	for _, b := range f.machines {
		if al := a.CheckInUse(b.Machine.Raw); al != nil {
			t.Fatalf("logged machine certificate: %v", al)
		}
	}
	if al := a.CheckInUse(f.machines[1].User.Raw); al != nil {
		t.Fatalf("logged user certificate: %v", al)
	}
	secret, _ := f.ca.IssueMachine(t, f.ca.NewProfile(t, "secret"))
	al := a.CheckInUse(secret.Machine.Raw)
	if al == nil || al.Kind != AlarmNotLogged || !strings.Contains(al.Message, secret.Machine.SerialNumber.Text(16)) {
		t.Fatalf("unlogged certificate: %v", al)
	}
	secretUser := f.ca.IssueUser(t, f.machines[0])
	if al := a.CheckInUse(secretUser.User.Raw); al == nil || al.Kind != AlarmNotLogged {
		t.Fatalf("unlogged user certificate: %v", al)
	}
	// Once logged (and verified again), it is no longer an alarm.
	f.append(f.log, translog.CertificateEntry(secret.Machine.Raw))
	if _, err := a.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if al := a.CheckInUse(secret.Machine.Raw); al != nil {
		t.Fatalf("after logging: %v", al)
	}
}

// TestDetectsBadContent: what the CA logged is wrong, though the log is
// intact.
func TestDetectsBadContent(t *testing.T) {
	f := newFixture(t)
	f.populate(f.log, 2)
	stranger := testca.New(t, td) // another CA of the same trust domain
	forged, _ := stranger.IssueMachine(t, stranger.NewProfile(t, "forged"))
	dup := f.machines[0].Machine
	f.append(f.log,
		translog.CertificateEntry(forged.Machine.Raw, forged.Intermediates[0].Raw),
		translog.RevocationEntry(translog.Revocation{Serial: serialOf(12345), Time: time.Now(), Reason: translog.ReasonSuperseded, Device: "abcdefghijklmnop"}),
		translog.RevocationEntry(translog.Revocation{Serial: dup.SerialNumber, Time: time.Now(), Reason: translog.ReasonSuperseded, Device: "abcdefghijklmnop"}),
		translog.PolicyEntry(1, []byte("policy v1, again but different"), time.Now()),
	)
	_, rep := f.verify(f.state)
	n := f.log.Size()
	want := map[AlarmKind]uint64{
		AlarmUntrustedCertificate: n - 4,
		AlarmUnknownRevocation:    n - 3,
		AlarmPolicyRollback:       n - 1,
	}
	for kind, idx := range want {
		al := hasAlarm(rep, kind)
		if al == nil || al.Index == nil || *al.Index != idx {
			t.Errorf("want %s at entry %d, got %+v", kind, idx, rep.Alarms)
		}
	}
	// The revocation naming the wrong device for a real serial too.
	found := false
	for _, al := range rep.Alarms {
		if al.Kind == AlarmUnknownRevocation && al.Index != nil && *al.Index == n-2 && strings.Contains(al.Message, "is device") {
			found = true
		}
	}
	if !found {
		t.Errorf("revocation naming another device: %+v", rep.Alarms)
	}
	// Content alarms do not stop the checkpoint being recorded: the log
	// itself is sound.
	if st, err := LoadState(f.state); err != nil || len(st.Checkpoints) != 1 {
		t.Fatalf("state after content alarms: %+v %v", st, err)
	}
}

func TestKeyAndCheckpointAlarms(t *testing.T) {
	f := newFixture(t)
	f.populate(f.log, 2)
	_, rep := f.verify(f.state)
	mustOK(t, rep)

	// The same log re-keyed: the served key changed, the checkpoint is no
	// longer signed by the pinned one.
	skey, vkey, _ := translog.GenerateKey(translog.Origin(td))
	s, _, _ := translog.NewSigner(skey)
	f.log.Close()
	path := f.t.TempDir() + "/rekeyed.db"
	rekeyed, err := translog.Open(path, s, translog.Origin(td))
	if err != nil {
		t.Fatal(err)
	}
	defer rekeyed.Close()
	h, _ := rekeyed.Handler(vkey)
	f.serveHandler(h)
	_, rep = f.verify(f.state)
	if hasAlarm(rep, AlarmKeyChanged) == nil || hasAlarm(rep, AlarmBadCheckpoint) == nil {
		t.Fatalf("re-keyed log: %+v", rep.Alarms)
	}

	// A garbage checkpoint.
	f.serveHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == translog.PathKey {
			w.Write([]byte(f.vkey))
			return
		}
		w.Write([]byte("not a checkpoint"))
	}))
	_, rep = f.verify(f.state)
	if hasAlarm(rep, AlarmBadCheckpoint) == nil {
		t.Fatalf("garbage checkpoint: %+v", rep.Alarms)
	}

	// An unreachable log is an error, not an alarm.
	f.srv.Close()
	if _, err := f.auditor(f.state).Verify(context.Background()); err == nil {
		t.Fatal("unreachable log: no error")
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	if s, err := LoadState(dir + "/missing.json"); err != nil || len(s.Checkpoints) != 0 {
		t.Fatalf("missing state: %v", err)
	}
	os.WriteFile(dir+"/bad.json", []byte("{"), 0o600)
	if _, err := LoadState(dir + "/bad.json"); err == nil {
		t.Fatal("malformed state accepted")
	}
	os.WriteFile(dir+"/v2.json", []byte(`{"version":2}`), 0o600)
	if _, err := LoadState(dir + "/v2.json"); err == nil {
		t.Fatal("unknown version accepted")
	}
	s := &State{Version: StateVersion, Origin: "o", LogKey: "k"}
	for i := range MaxStateCheckpoints + 10 {
		s.record(translog.Checkpoint{Size: uint64(i + 1)}, time.Now())
	}
	if len(s.Checkpoints) != MaxStateCheckpoints || s.Checkpoints[0].Size != 1 || s.Checkpoints[len(s.Checkpoints)-1].Size != MaxStateCheckpoints+10 {
		t.Fatalf("bounded state: %d checkpoints, first %d", len(s.Checkpoints), s.Checkpoints[0].Size)
	}
	if err := s.Save(dir + "/s.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadState(dir + "/s.json"); err != nil {
		t.Fatal(err)
	}
}

func TestWatch(t *testing.T) {
	f := newFixture(t)
	f.populate(f.log, 2)
	a := f.auditor(f.state)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	records := make(chan Record, 100)
	alarms := make(chan Alarm, 10)
	done := make(chan error, 1)
	go func() {
		done <- a.Watch(ctx, WatchOptions{
			Interval: 20 * time.Millisecond,
			OnRecord: func(r Record) { records <- r },
			OnAlarm:  func(al Alarm) { alarms <- al },
		})
	}()
	// Wait for the first verification (the state file appears).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(f.state); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("watch never verified")
		}
	}
	f.append(f.log, translog.PolicyEntry(f.policy+1, []byte("policy next"), time.Now()))
	select {
	case r := <-records:
		if r.Kind != KindPolicy || r.PolicyVersion != f.policy+1 || r.Index != f.log.Size()-1 {
			t.Fatalf("new record %+v", r)
		}
	case al := <-alarms:
		t.Fatalf("alarm: %v", al)
	case <-ctx.Done():
		t.Fatal("watch saw no new entry")
	}
	// A rewritten history ends the watch with an alarm.
	fork := f.openLog()
	f.populate(fork, 3)
	f.serve(fork)
	select {
	case err := <-done:
		if !errors.Is(err, ErrAlarm) {
			t.Fatalf("watch returned %v", err)
		}
	case <-ctx.Done():
		t.Fatal("watch did not stop on a rewritten history")
	}
	if al := <-alarms; al.Kind != AlarmHistoryRewritten && al.Kind != AlarmRollback {
		t.Fatalf("alarm %v", al)
	}
}

// TestKeyRotationWithPin: the operators rotate the log key (same origin,
// same tree); an auditor who pins the new key keeps its history.
func TestKeyRotationWithPin(t *testing.T) {
	f := newFixture(t)
	f.populate(f.log, 2)
	_, rep := f.verify(f.state)
	mustOK(t, rep)
	entries, _ := f.log.Entries(0, f.log.Size())

	skey, vkey, _ := translog.GenerateKey(translog.Origin(td))
	s, _, _ := translog.NewSigner(skey)
	rotated, err := translog.Open(t.TempDir()+"/rotated.db", s, translog.Origin(td))
	if err != nil {
		t.Fatal(err)
	}
	defer rotated.Close()
	for _, e := range entries {
		entry, _ := translog.ParseLeaf(e.Leaf)
		entry.Chain = e.Chain
		f.append(rotated, entry)
	}
	f.append(rotated, translog.PolicyEntry(2, []byte("v2"), time.Now()))
	h, _ := rotated.Handler(vkey)
	f.serveHandler(h)

	_, rep = f.verify(f.state) // pinned old key
	if hasAlarm(rep, AlarmKeyChanged) == nil {
		t.Fatalf("rotation without a pin: %+v", rep.Alarms)
	}
	a, err := New(Config{Client: f.client, Roots: f.ca.Roots(), StateFile: f.state, LogKey: vkey})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = a.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, rep)
	if len(rep.Checked) != 1 {
		t.Fatalf("history not checked after rotation: %v", rep.Checked)
	}
	if st, _ := LoadState(f.state); st.LogKey != vkey || len(st.Checkpoints) != 2 {
		t.Fatalf("state after rotation: %+v", st)
	}
}
