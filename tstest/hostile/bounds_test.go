package hostile_test

// A coordinator that sends events at and over the size limit, compressed
// streams and floods of oversized and invalid peers: the agent takes what
// fits, refuses the rest without dropping what it holds, and its memory
// and status stay bounded whatever the coordinator sends.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// padded is ev's line padded to exactly n bytes with a field agents do not
// know (and so ignore).
func padded(t *testing.T, ev *wire.Event, n int) []byte {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	const field = `,"pad":""`
	pad := n - len(b) - len(field)
	if pad < 0 {
		t.Fatalf("event is %d bytes already, over %d", len(b), n)
	}
	out := append(bytes.Clone(b[:len(b)-1]), field[:len(field)-1]...)
	out = append(out, strings.Repeat("p", pad)...)
	out = append(out, `"}`...)
	if len(out) != n {
		t.Fatalf("padded event is %d bytes, want %d", len(out), n)
	}
	return out
}

// TestEventAtSizeLimit: an event of exactly wire.MaxEventSize bytes, what
// the coordinator's encoder still writes, is read and applied; the stream
// stays open. One byte more is refused and the agent reconnects.
func TestEventAtSizeLimit(t *testing.T) {
	f := newFixture(t)
	f.Coord.SetSnapshot(f.Victim.Self.DeviceID, f.Peer.AsPeer()) // after the reconnection
	old := f.Victim.Conn
	if err := old.SendRaw(padded(t, upsert(f.Peer.AsPeer()), wire.MaxEventSize)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-old.Done():
		t.Fatalf("the victim dropped the stream on an event of exactly %d bytes; last error: %s", wire.MaxEventSize,
			waitStatus(t, f.Victim, "status", func(*agent.Status) bool { return true }).Coordinator.LastError)
	case <-time.After(500 * time.Millisecond):
	}
	f.sync(t)
	if _, ok := devicePeer(t, f.Victim, f.Peer.Self.WireGuardKey); !ok {
		t.Fatalf("the peer relayed in an event of exactly %d bytes is not configured", wire.MaxEventSize)
	}

	if err := old.SendRaw(padded(t, upsert(f.Peer.AsPeer()), wire.MaxEventSize+1)); err != nil {
		t.Logf("the oversized event was not written whole: %v", err)
	}
	select {
	case <-old.Done():
	case <-time.After(waitFor):
		t.Fatalf("the victim kept reading a stream with an event of %d bytes", wire.MaxEventSize+1)
	}
	f.awaitVictim(t)
	st := waitStatus(t, f.Victim, "reconnection", func(st *agent.Status) bool { return st.Coordinator.Connected })
	if _, ok := peerOf(st, f.Peer.Self.DeviceID); !ok {
		t.Errorf("the peer is missing after the reconnection: %s", asJSON(st.Peers))
	}
}

// gzipBomb answers a watch with a gzip stream that inflates to up to
// 64 GiB of blank lines (keep-alives to the reader), then the snapshot
// relaying peer: a few MB on the wire, and seconds of CPU for a client
// that inflates it. It writes until the agent hangs up.
func gzipBomb(t *testing.T, peer wire.Peer) http.HandlerFunc {
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	zw.Write(bytes.Repeat([]byte("\n"), 1<<20))
	zw.Close()
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		for range 64 << 10 {
			if _, err := w.Write(member.Bytes()); err != nil || rc.Flush() != nil {
				return
			}
		}
		zw := gzip.NewWriter(w)
		json.NewEncoder(zw).Encode(&wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{peer}})
		zw.Close()
		rc.Flush()
		<-r.Context().Done()
	}
}

// TestGzipBomb: the coordinator answers a watch with a compressed stream
// that inflates a thousandfold. The agent must not inflate it (it asks for
// no compression and refuses a compressed answer), drop it at once and
// apply the valid snapshot of its next watch: the peer is configured in
// its WireGuard device.
func TestGzipBomb(t *testing.T) {
	f := newFixture(t)
	f.Coord.SetSnapshot(f.Victim.Self.DeviceID, f.Peer.AsPeer())
	f.Coord.OnNextWatch(gzipBomb(t, f.Peer.AsPeer()))
	old := f.Victim.Conn
	old.Close() // the victim reconnects, into the bomb
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	cn, err := f.Coord.WaitForAgent(ctx, f.Victim.Self.DeviceID)
	if err != nil {
		t.Fatalf("the victim did not come back from the bomb within %s (still inflating it?): %v", waitFor, err)
	}
	f.Victim.Conn = cn
	waitStatus(t, f.Victim, "the peer from the snapshot after the bomb", func(st *agent.Status) bool {
		_, ok := peerOf(st, f.Peer.Self.DeviceID)
		return ok
	})
	if _, ok := devicePeer(t, f.Victim, f.Peer.Self.WireGuardKey); !ok {
		t.Fatal("the peer of the snapshot after the bomb is not configured in the WireGuard device")
	}
	var asked []string
	for _, p := range f.Coord.Published() {
		asked = append(asked, p.AcceptEncoding)
	}
	if slices.ContainsFunc(asked, func(s string) bool { return s != "" }) {
		t.Errorf("the agent asked for compressed answers (Accept-Encoding %q)", asked)
	}
}

// heapInuse is the process's heap in use after a full collection.
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// Bounds the flood test holds the victim to, whatever the coordinator
// sends: its heap grows by less than floodHeapBound (the refusals it
// remembers are agent.MaxRejections, each cut to well under a kilobyte)
// and `certmesh status --json` stays under floodStatusBound.
const (
	floodHeapBound   = 16 << 20
	floodStatusBound = 96 << 10
)

// TestFloodOfInvalidPeers: the coordinator relays thousands of distinct
// peers, each refused (a 32 KiB label, a corrupt bundle, an empty one with
// every endpoint slot used), and a snapshot of 1,000 more beside the
// legitimate peer. The victim's heap and its status stay bounded, it keeps
// counting the refusals by reason, and the legitimate peer still gets
// through. It runs alone (not in parallel): the heap measured is the
// process's.
func TestFloodOfInvalidPeers(t *testing.T) {
	f := newSerialFixture(t)
	f.connectPeer(t)
	before := heapInuse()

	const n = 3000
	eps := make([]netip.AddrPort, wire.MaxEndpoints)
	for i := range eps {
		eps[i] = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(20000+i))
	}
	junk := bytes.Repeat([]byte{0x30, 0x82}, 1<<10)
	for i := range n {
		var p wire.Peer
		switch i % 3 {
		case 0:
			p = wire.Peer{Label: fmt.Sprintf("big-%d-%s", i, strings.Repeat("x", 32<<10))}
		case 1:
			p = wire.Peer{Label: fmt.Sprintf("corrupt-%d", i), Bundle: certs.WireBundle{Machine: junk}}
		case 2:
			p = wire.Peer{Label: fmt.Sprintf("eps-%d-%s", i, strings.Repeat("e", 100)), Endpoints: eps}
		}
		send(t, f.Victim.Conn, upsert(p))
	}
	snap := []wire.Peer{f.Peer.AsPeer()}
	for i := range 1000 {
		snap = append(snap, wire.Peer{Label: fmt.Sprintf("snap-%d-%s", i, strings.Repeat("s", 1<<10))})
	}
	send(t, f.Victim.Conn, &wire.Event{Type: wire.EventSnapshot, Peers: snap})
	st := f.sync(t)

	after := heapInuse()
	grew := int64(after) - int64(before)
	t.Logf("heap in use: %d KiB before the flood, %d KiB after (%+d KiB)", before>>10, after>>10, grew>>10)
	if grew > floodHeapBound {
		t.Errorf("the flood grew the heap by %d KiB, more than the bound of %d KiB", grew>>10, floodHeapBound>>10)
	}
	out, err := json.MarshalIndent(st, "", "  ") // what certmesh status --json prints
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status --json: %d bytes, %d refusals listed", len(out), len(st.Rejected))
	if len(out) > floodStatusBound {
		t.Errorf("status --json is %d KiB after the flood, more than the bound of %d KiB", len(out)>>10, floodStatusBound>>10)
	}
	var counted uint64
	for _, c := range st.RejectedCounts {
		counted += c
	}
	if counted < n+1000 {
		t.Errorf("the victim counted %d refusals, want at least %d: %v", counted, n+1000, st.RejectedCounts)
	}
	if _, ok := peerOf(st, f.Peer.Self.DeviceID); !ok {
		t.Fatalf("the legitimate peer is no longer verified after the flood")
	}
	f.peerReaches(t)
	checkDeviceMatchesStatus(t, f.Victim)
}
