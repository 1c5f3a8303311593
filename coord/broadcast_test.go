package coord

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// These tests look inside the coordinator to show what a change costs: one
// encoding, then one channel send per other member, whatever the size of
// the mesh. The HTTP side is covered by the black-box tests.

// mesh is a coordinator with n members that are only queues (no HTTP), and
// one more, the changer, whose published state changes.
type mesh struct {
	s       *Server
	changer certs.DeviceID
	peer    wire.Peer // the changer's state, a real bundle
	members []*member // the n others
}

func newMesh(tb testing.TB, n, buffer int) *mesh {
	tb.Helper()
	ca := testca.New(tb, "corp.example")
	p := ca.NewProfile(tb, "changer")
	b, _ := ca.IssueMachine(tb, p)
	s := New(ca.Roots(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), WatchBuffer: buffer})
	m := &mesh{s: s, changer: p.DeviceID,
		peer: wire.Peer{Label: string(p.DeviceID), Bundle: b.Wire(), Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:51820")}}}
	s.peers[p.DeviceID] = newMember(p.DeviceID, buffer)
	for i := range n {
		id := certs.DeviceID(fmt.Sprintf("member%08d", i))
		mb := newMember(id, buffer)
		mb.peer = m.peer
		mb.peer.Label = string(id)
		s.peers[id] = mb
		m.members = append(m.members, mb)
	}
	return m
}

func newMember(id certs.DeviceID, buffer int) *member {
	return &member{id: id, events: make(chan []byte, buffer), done: make(chan struct{})}
}

// drain empties every member's queue and returns how many events it took.
func (m *mesh) drain() int {
	n := 0
	for _, mb := range m.members {
		for len(mb.events) > 0 {
			<-mb.events
			n++
		}
	}
	return n
}

// TestChangeIsEncodedOnce: an update, a document and a departure each
// reach every other member as the very same encoded bytes (one encoding,
// shared), exactly once, and never the member that changed.
func TestChangeIsEncodedOnce(t *testing.T) {
	m := newMesh(t, 50, 4)
	changes := []struct {
		name string
		do   func() error
		want wire.EventType
	}{
		{"update", func() error { return m.s.update(m.changer, m.peer) }, wire.EventUpsert},
		{"document", func() error { return m.s.SetDocument(wire.DocPolicy, []byte("policy")) }, wire.EventDocument},
		{"leave", func() error { m.s.Kick(m.changer); return nil }, wire.EventRemove},
	}
	for _, c := range changes {
		if err := c.do(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var first []byte
		for i, mb := range m.members {
			if len(mb.events) != 1 {
				t.Fatalf("%s: member %d has %d events queued, want 1", c.name, i, len(mb.events))
			}
			enc := <-mb.events
			if first == nil {
				first = enc
				e, err := wire.DecodeEvent(enc[:len(enc)-1])
				if err != nil || e.Type != c.want {
					t.Fatalf("%s: queued %v %v, want a %s event", c.name, e, err, c.want)
				}
			}
			if unsafe.SliceData(enc) != unsafe.SliceData(first) || len(enc) != len(first) {
				t.Fatalf("%s: member %d got its own encoding of the event, want the shared one", c.name, i)
			}
		}
	}
	// The changer (removed by the last change) was sent nothing of its own.
	if n := len(m.s.peers); n != len(m.members) {
		t.Fatalf("%d members after the changer left, want %d", n, len(m.members))
	}
}

// TestChangeCostIndependentOfMeshSize: the allocations of a change are the
// same in a mesh of 10 and of 1000: nothing is encoded or copied per
// member (a channel send of a shared slice allocates nothing).
func TestChangeCostIndependentOfMeshSize(t *testing.T) {
	allocs := func(n int, change func(m *mesh)) float64 {
		m := newMesh(t, n, 4)
		return testing.AllocsPerRun(20, func() {
			change(m)
			if got := m.drain(); got != n {
				t.Fatalf("mesh of %d: a change queued %d events, want %d", n, got, n)
			}
		})
	}
	for _, c := range []struct {
		name   string
		change func(m *mesh)
	}{
		{"update", func(m *mesh) {
			if err := m.s.update(m.changer, m.peer); err != nil {
				t.Fatal(err)
			}
		}},
		{"document", func(m *mesh) {
			if err := m.s.SetDocument(wire.DocCRL, []byte("crl")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		small, large := allocs(10, c.change), allocs(1000, c.change)
		t.Logf("%s: %.0f allocations in a mesh of 10, %.0f in a mesh of 1000", c.name, small, large)
		// Work per member would add about 990 allocations; the race
		// detector's bookkeeping moves the count by one or two.
		if large > small+5 {
			t.Errorf("%s: %.0f allocations in a mesh of 10 but %.0f in a mesh of 1000: work per member beyond a channel send", c.name, small, large)
		}
	}
}

// BenchmarkBroadcast measures one change in meshes of 10, 100 and 1000
// members: "update" is the whole of it (encode the upsert once, queue it
// to every other member), "fanout" only the queueing of an already encoded
// event, both reported also per member ("ns/member"). The encoding is
// constant; the fan-out should grow by one channel send per member, so
// fanout's ns/member stays flat and update's falls towards it as N grows.
func BenchmarkBroadcast(b *testing.B) {
	// Queues are drained every buffer changes with the timer stopped, as
	// agents that keep up would. Letting them run deep (hundreds of events
	// in each of 1000 queues, megabytes) measures cache misses instead:
	// about 330 ns a member at N=1000 with 256 against 45 ns with 16.
	const buffer = 16
	for _, n := range []int{10, 100, 1000} {
		m := newMesh(b, n, buffer)
		enc, err := encodeEvent(&wire.Event{Type: wire.EventUpsert, Peer: &m.peer})
		if err != nil {
			b.Fatal(err)
		}
		// run times change, which queues perChange events to each member.
		run := func(b *testing.B, perChange int, change func()) {
			b.ReportAllocs()
			m.drain()
			queued := 0
			for b.Loop() {
				if queued+perChange > buffer {
					b.StopTimer()
					m.drain()
					queued = 0
					b.StartTimer()
				}
				change()
				queued += perChange
			}
			b.StopTimer()
			if got := len(m.members[n-1].events); got != queued {
				b.Fatalf("last member has %d events queued, want %d: a member was dropped", got, queued)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/member")
		}
		b.Run(fmt.Sprintf("update/N=%d", n), func(b *testing.B) {
			run(b, 1, func() {
				if err := m.s.update(m.changer, m.peer); err != nil {
					b.Fatal(err)
				}
			})
		})
		// A join and a leave of one more member: two broadcasts, plus
		// the joiner's snapshot of the n+1 others, built and encoded as
		// handleWatch writes it. Unlike the rest this grows with the
		// mesh by design: the snapshot is the mesh.
		b.Run(fmt.Sprintf("join-leave/N=%d", n), func(b *testing.B) {
			joiner := certs.DeviceID("joiner")
			run(b, 2, func() {
				mb := &member{id: joiner, peer: m.peer, encoded: enc, events: make(chan []byte, 1), done: make(chan struct{})}
				snap, _, _ := m.s.join(mb)
				if err := wire.EncodeEvent(io.Discard, &wire.Event{Type: wire.EventSnapshot, Peers: snap}); err != nil {
					b.Fatal(err)
				}
				m.s.leave(mb)
			})
		})
		b.Run(fmt.Sprintf("fanout/N=%d", n), func(b *testing.B) {
			run(b, 1, func() {
				m.s.mu.Lock()
				m.s.broadcastLocked(m.changer, enc)
				m.s.mu.Unlock()
			})
		})
	}
}
