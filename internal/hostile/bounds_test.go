package hostile_test

// A coordinator that sends events at and over the size limit, compressed
// streams and floods of oversized and invalid peers: the agent takes what
// fits, refuses the rest without dropping what it holds, and its memory
// and status stay bounded whatever the coordinator sends.

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
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
