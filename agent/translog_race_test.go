package agent

import (
	"context"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/certmesh/certmesh/translog"
)

// gatedLog serves a real transparency log in process; the first
// consistency proof it is asked for waits until release is closed.
type gatedLog struct {
	h       http.Handler
	first   chan struct{} // closed when the first proof request arrived
	release chan struct{}
	asked   atomic.Int32
}

func (g *gatedLog) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/consistency") {
		if g.asked.Add(1) == 1 {
			close(g.first)
			<-g.release
		}
	}
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// raceLog is a real log of n entries and an agent whose witness follows it.
func raceLog(t *testing.T, n int) (*logState, *translog.Log, *gatedLog) {
	t.Helper()
	const origin = "corp.example/certmesh/log"
	skey, vkey, err := translog.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, _, err := translog.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := translog.Open(filepath.Join(t.TempDir(), "log.db"), signer, origin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	appendRevocations(t, lg, n)
	h, err := lg.Handler(vkey)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedLog{h: h, first: make(chan struct{}), release: make(chan struct{})}
	client, err := translog.NewClient("https://ca.invalid", &http.Client{Transport: g})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := newLogState(t.TempDir(), vkey, client, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return ls, lg, g
}

var raceSerial int64

func appendRevocations(t *testing.T, lg *translog.Log, n int) {
	t.Helper()
	for range n {
		raceSerial++
		e := translog.RevocationEntry(translog.Revocation{Serial: new(big.Int).SetInt64(1<<40 + raceSerial),
			Time: time.Unix(1_700_000_000, 0), Reason: translog.ReasonCessationOfOperation, Device: "abcdefghijklmnop"})
		if _, err := lg.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func checkpointOf(t *testing.T, a *logState, lg *translog.Log) translog.Checkpoint {
	t.Helper()
	cp, err := a.witness.Verifier().ParseCheckpoint(lg.Checkpoint())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// Two log checks at once (a renewal's inclusion check and a relayed
// checkpoint) both read the witness's latest tree A and fetch proofs from
// it; the one answered second must not check its proof against the tree
// the first one has meanwhile moved to. Before the checks were serialised,
// the same tree B twice gave "malformed-proof: consistency proof between
// equal trees", and B then C (C checked second) a false INCONSISTENT alarm.
func TestConcurrentLogChecks(t *testing.T) {
	for _, tc := range []struct {
		name        string
		firstIsLast bool // the gated check is for the larger tree
	}{
		{"same tree twice", false},
		{"larger tree answered after a smaller one", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, lg, g := raceLog(t, 3)
				ctx := context.Background()
				if err := a.checkConsistent(ctx, checkpointOf(t, a, lg)); err != nil { // tree A, trusted on first use
					t.Fatal(err)
				}
				appendRevocations(t, lg, 2)
				b := checkpointOf(t, a, lg)
				first, second := b, b
				if tc.firstIsLast {
					appendRevocations(t, lg, 2)
					first = checkpointOf(t, a, lg)
				}
				errs := make(chan error, 2)
				go func() { errs <- a.checkConsistent(ctx, first) }()
				<-g.first // the first check holds its proof request
				go func() { errs <- a.checkConsistent(ctx, second) }()
				synctest.Wait() // the second check ran as far as it can
				close(g.release)
				for range 2 {
					if err := <-errs; err != nil {
						t.Errorf("log check: %v", err)
					}
				}
				if alarm := a.currentAlarm(); alarm != "" {
					t.Errorf("false alarm: %s", alarm)
				}
				if latest, _ := a.witness.Latest(); latest.Size != first.Size {
					t.Errorf("witness holds tree %d, want %d", latest.Size, first.Size)
				}
			})
		})
	}
}
