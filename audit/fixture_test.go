package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/translog"
	"github.com/certmesh/certmesh/tstest/testca"
)

const td = certs.TrustDomain("corp.example")

// fixture is a CA's log served over HTTP, with a swappable handler so that
// tests can put a tampered or rebuilt log behind the same URL.
type fixture struct {
	t        *testing.T
	ca       *testca.CA
	skey     string
	vkey     string
	log      *translog.Log
	handler  atomic.Pointer[http.Handler]
	srv      *httptest.Server
	client   *translog.Client
	machines []certs.Bundle // logged machine bundles (with the user for some)
	state    string
	policy   uint64 // the last policy version populate logged
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, ca: testca.New(t, td)}
	var err error
	f.skey, f.vkey, err = translog.GenerateKey(translog.Origin(td))
	if err != nil {
		t.Fatal(err)
	}
	f.log = f.openLog()
	f.serve(f.log)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*f.handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	f.client, err = translog.NewClient(f.srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.state = filepath.Join(t.TempDir(), "audit-state.json")
	return f
}

// openLog opens a new, empty log with the fixture's key.
func (f *fixture) openLog() *translog.Log {
	f.t.Helper()
	s, _, err := translog.NewSigner(f.skey)
	if err != nil {
		f.t.Fatal(err)
	}
	l, err := translog.Open(filepath.Join(f.t.TempDir(), "log.db"), s, translog.Origin(td))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { l.Close() })
	return l
}

// serve puts l's handler behind the fixture's URL.
func (f *fixture) serve(l *translog.Log) {
	f.t.Helper()
	f.serveHandler(f.handlerOf(l))
}

func (f *fixture) handlerOf(l *translog.Log) http.Handler {
	f.t.Helper()
	h, err := l.Handler(f.vkey)
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

func (f *fixture) serveHandler(h http.Handler) { f.handler.Store(&h) }

func (f *fixture) append(l *translog.Log, es ...translog.Entry) {
	f.t.Helper()
	if _, err := l.AppendBatch(context.Background(), es); err != nil {
		f.t.Fatal(err)
	}
}

// populate logs n machines (every other one with a user certificate), the
// next policy version, and the revocation of the first of these machine
// certificates.
func (f *fixture) populate(l *translog.Log, n int) {
	f.t.Helper()
	var es []translog.Entry
	firstNew := len(f.machines)
	for i := range n {
		b, _ := f.ca.IssueMachine(f.t, f.ca.NewProfile(f.t, "host"+string(rune('a'+i))))
		es = append(es, translog.CertificateEntry(b.Machine.Raw, b.Intermediates[0].Raw))
		if i%2 == 1 {
			b = f.ca.IssueUser(f.t, b, testca.WithGroups("eng"))
			es = append(es, translog.CertificateEntry(b.User.Raw, b.Intermediates[0].Raw))
		}
		f.machines = append(f.machines, b)
	}
	f.policy++
	es = append(es, translog.PolicyEntry(f.policy, []byte(fmt.Sprintf("policy v%d", f.policy)), time.Now()))
	first := f.machines[firstNew].Machine
	dev := first.URIs[0].Path[len("/device/"):]
	es = append(es, translog.RevocationEntry(translog.Revocation{Serial: first.SerialNumber, Time: time.Now(), Reason: translog.ReasonKeyCompromise, Device: certs.DeviceID(dev)}))
	f.append(l, es...)
}

func (f *fixture) auditor(state string) *Auditor {
	f.t.Helper()
	a, err := New(Config{Client: f.client, Roots: f.ca.Roots(), StateFile: state})
	if err != nil {
		f.t.Fatal(err)
	}
	return a
}

func (f *fixture) verify(state string) (*Auditor, *Report) {
	f.t.Helper()
	a := f.auditor(state)
	rep, err := a.Verify(context.Background())
	if err != nil {
		f.t.Fatalf("Verify: %v", err)
	}
	return a, rep
}

func hasAlarm(rep *Report, kind AlarmKind) *Alarm {
	for i := range rep.Alarms {
		if rep.Alarms[i].Kind == kind {
			return &rep.Alarms[i]
		}
	}
	return nil
}

func mustOK(t *testing.T, rep *Report) {
	t.Helper()
	if !rep.OK() {
		var b bytes.Buffer
		WriteReport(&b, rep)
		t.Fatalf("want no alarm:\n%s", b.String())
	}
}

// rewriteEntries wraps h, passing every entries answer through edit.
func rewriteEntries(h http.Handler, edit func(*translog.EntriesResponse)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != translog.PathEntries {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		var resp translog.EntriesResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		edit(&resp)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	})
}

func serialOf(n int64) *big.Int { return big.NewInt(n) }
