package coord_test

import (
	"bytes"
	"testing"

	"github.com/certmesh/certmesh/internal/wire"
)

// TestDocuments: the current documents go to a new watcher before its
// snapshot (CRL first, so that the agent judges the snapshot with it), each
// new version is broadcast to every connected watcher, and only the latest
// version of each kind is kept.
func TestDocuments(t *testing.T) {
	f := newFixture(t)
	if err := f.coord.SetDocument(wire.DocPolicy, []byte("policy v1")); err != nil {
		t.Fatal(err)
	}
	if err := f.coord.SetDocument(wire.DocCRL, []byte("crl 1")); err != nil {
		t.Fatal(err)
	}
	a := f.newDevice(t, "alpha")
	as := f.watch(t, a, "alpha", a.publish())
	_, docs := as.snapshot(t)
	wantDocs(t, "alpha", docs, wire.Document{Kind: wire.DocCRL, Data: []byte("crl 1")}, wire.Document{Kind: wire.DocPolicy, Data: []byte("policy v1")})

	// Connected watchers get each new version; the sender is nobody, so
	// everybody gets it.
	b := f.newDevice(t, "beta")
	bs := f.watch(t, b, "beta", b.publish())
	bs.snapshot(t)
	as.wantUpsert(t, b, b.publish())
	for _, d := range []struct {
		kind wire.DocKind
		data string
	}{{wire.DocPolicy, "policy v2"}, {wire.DocCheckpoint, "checkpoint 7"}, {wire.DocCRL, "crl 2"}} {
		if err := f.coord.SetDocument(d.kind, []byte(d.data)); err != nil {
			t.Fatal(err)
		}
		as.wantDocument(t, d.kind, []byte(d.data))
		bs.wantDocument(t, d.kind, []byte(d.data))
	}

	// A newcomer gets the current version of each kind, in the order CRL,
	// checkpoint, policy, then the snapshot.
	c := f.newDevice(t, "gamma")
	cs := f.watch(t, c, "gamma", c.publish())
	peers, docs := cs.snapshot(t)
	wantDocs(t, "gamma", docs,
		wire.Document{Kind: wire.DocCRL, Data: []byte("crl 2")},
		wire.Document{Kind: wire.DocCheckpoint, Data: []byte("checkpoint 7")},
		wire.Document{Kind: wire.DocPolicy, Data: []byte("policy v2")})
	if len(peers) != 2 {
		t.Fatalf("gamma's snapshot has %d peers, want 2", len(peers))
	}

	// A document too large for one event is refused and changes nothing.
	if err := f.coord.SetDocument(wire.DocPolicy, bytes.Repeat([]byte{'p'}, wire.MaxEventSize)); err == nil {
		t.Error("SetDocument accepted a document larger than an event may be")
	}
	d := f.newDevice(t, "delta")
	ds := f.watch(t, d, "delta", d.publish())
	_, docs = ds.snapshot(t)
	if got := docs[len(docs)-1]; got.Kind != wire.DocPolicy || string(got.Data) != "policy v2" {
		t.Errorf("after a refused SetDocument the current policy is %s %.20q, want policy v2", got.Kind, got.Data)
	}
}

func wantDocs(t *testing.T, who string, got []wire.Document, want ...wire.Document) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d documents before the snapshot, want %d", who, len(got), len(want))
	}
	for i := range want {
		if got[i].Kind != want[i].Kind || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("%s: document %d is %s %q, want %s %q", who, i, got[i].Kind, got[i].Data, want[i].Kind, want[i].Data)
		}
	}
}

// TestSetDocumentRefusesInvalidDocuments: a document event agents would
// refuse to decode (no kind, no data) must not be relayed: it would end
// every connected watch, and, kept as the current document, every future
// watch before its snapshot.
//
// Found by these tests and fixed: SetDocument encodes
// without validating (coord/coord.go:114-124), so an empty document is
// stored and broadcast, and wire.DecodeEvent refuses it on every agent
// ("document event without a document").
func TestSetDocumentRefusesInvalidDocuments(t *testing.T) {
	f := newFixture(t)
	if err := f.coord.SetDocument(wire.DocPolicy, []byte("policy v1")); err != nil {
		t.Fatal(err)
	}
	a := f.newDevice(t, "alpha")
	as := f.watch(t, a, "alpha", a.publish())
	as.snapshot(t)
	for _, c := range []struct {
		kind wire.DocKind
		data []byte
	}{{wire.DocPolicy, nil}, {wire.DocCRL, []byte{}}, {"", []byte("no kind")}} {
		if err := f.coord.SetDocument(c.kind, c.data); err == nil {
			t.Errorf("SetDocument(%q, %q) accepted a document agents cannot decode", c.kind, c.data)
		}
	}
	f.sentinel(t, as) // the watch is still open, and nothing came before
	b := f.newDevice(t, "beta")
	bs := f.watch(t, b, "beta", b.publish())
	_, docs := bs.snapshot(t)
	if len(docs) == 0 {
		t.Fatal("beta got no documents before its snapshot")
	}
	wantDocs(t, "beta", docs,
		wire.Document{Kind: wire.DocCheckpoint, Data: docs[0].Data}, // the sentinel
		wire.Document{Kind: wire.DocPolicy, Data: []byte("policy v1")})
}
