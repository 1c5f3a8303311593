package agent

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// TestRejectionsBounded: thousands of refusals, some with labels of 10 KiB,
// leave the MaxRejections most recent, cut short, and a count of all.
func TestRejectionsBounded(t *testing.T) {
	h := newHarness(t)
	var logs lineLog
	h.m.log = slog.New(slog.NewTextHandler(&logs, nil))
	const n = 1000
	label := func(i int) string {
		if i%2 == 0 {
			return fmt.Sprintf("big-%d-%s", i, strings.Repeat("x", 10<<10))
		}
		return fmt.Sprintf("small-%d", i)
	}
	for i := range n {
		h.v.handle(upsert(wire.Peer{Label: label(i)}))
	}
	_, rs, counts := h.m.snapshot()
	if len(rs) != MaxRejections {
		t.Fatalf("%d refusals remembered, want %d", len(rs), MaxRejections)
	}
	if rs[0].Label != label(n-1) {
		t.Errorf("the newest refusal listed first is %.40q, want %q", rs[0].Label, label(n-1))
	}
	for _, r := range rs {
		if len(r.Label) > wire.MaxLabelSize+32 || len(r.Error) > maxRejectionError+32 {
			t.Errorf("a refusal keeps %d bytes of label and %d of error", len(r.Label), len(r.Error))
		}
	}
	if counts[certs.ReasonMalformed] != n {
		t.Errorf("counts %v, want %d malformed", counts, n)
	}
	// All in one (fake) second: only the first few are warnings; the next
	// warning, a second later, says how many went unlogged.
	if got := strings.Count(logs.b.String(), "level=WARN"); got != refusalLogBurst {
		t.Errorf("%d warnings for %d refusals in one second, want %d", got, n, refusalLogBurst)
	}
	h.now = h.now.Add(time.Second)
	h.v.handle(upsert(wire.Peer{Label: "later"}))
	if want := fmt.Sprintf("more_refused_unlogged=%d", n-refusalLogBurst); !strings.Contains(logs.b.String(), want) {
		t.Errorf("the next warning does not say %s:\n%.2000s", want, logs.b.String())
	}
}

// TestPeersHeldBounded: once the agent holds its maximum of peers, a new
// device is refused; those it holds stay and may be updated.
func TestPeersHeldBounded(t *testing.T) {
	h := newHarness(t)
	h.m.maxPeers = 2
	var held []wire.Peer
	for i := range 2 {
		p := h.peer(t, fmt.Sprintf("p%d", i), h.pki.NewProfile(t, fmt.Sprintf("host%d", i)))
		h.v.handle(upsert(p))
		held = append(held, p)
	}
	h.v.handle(upsert(h.peer(t, "p2", h.pki.NewProfile(t, "host2"))))
	if r, ok := h.rejection("p2"); !ok || r.Reason != ReasonTooManyPeers {
		t.Fatalf("a third peer over a maximum of 2: %+v, want %s", r, ReasonTooManyPeers)
	}
	h.v.handle(upsert(held[0]))
	if ps, _, _ := h.m.snapshot(); len(ps) != 2 {
		t.Fatalf("%d peers held, want 2", len(ps))
	}
	if _, ok := h.rejection("p0"); ok {
		t.Errorf("an update of a held peer was refused")
	}
}
