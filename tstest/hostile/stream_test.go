package hostile_test

// A coordinator that sends bytes that are no valid event stream: the agent
// must survive (ignore the line or drop the stream and reconnect), keep
// the legitimate peer configured all along, and go on handling events.

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/hostile"
)

// sendLines writes each line in turn. Once the agent dropped the stream,
// later writes fail, which is fine.
func sendLines(lines ...string) func(*testing.T, *fixture, *hostile.Conn) {
	return func(t *testing.T, _ *fixture, cn *hostile.Conn) {
		for i, l := range lines {
			if err := cn.SendRaw([]byte(l)); err != nil {
				t.Logf("line %d not written (the agent dropped the stream?): %v", i, err)
				return
			}
		}
	}
}

// peerEventPrefix is the first half of the line relaying the peer.
func peerEventPrefix(t *testing.T, f *fixture) []byte {
	line, err := json.Marshal(upsert(f.Peer.AsPeer()))
	if err != nil {
		t.Fatal(err)
	}
	return line[:len(line)/2]
}

// watchDevicePeer samples n's WireGuard peers every 10 ms until the
// returned function is called, which returns how many samples lacked a
// peer with n's legitimate peer's key.
func watchDevicePeer(f *fixture) (stop func() (missing, samples int)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var missing, samples int
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			ps, err := f.Victim.Agent.Device().Peers()
			samples++
			found := false
			for _, p := range ps {
				found = found || p.PublicKey == f.Peer.Self.WireGuardKey
			}
			if err != nil || !found {
				missing++
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() (int, int) {
		close(done)
		wg.Wait()
		return missing, samples
	}
}

func TestHostileStream(t *testing.T) {
	t.Parallel()
	junk := make([]byte, 8<<10)
	rand.Read(junk)
	oversized := `{"type":"upsert","peer":{"label":"` + strings.Repeat("a", wire.MaxEventSize) + `"}}`
	cases := []struct {
		name string
		send func(*testing.T, *fixture, *hostile.Conn)
	}{
		{"not-json", sendLines("this is not JSON \x00\xff\xfe")},
		{"binary", sendLines(string(junk))},
		{"wrong-shapes", sendLines(
			`{"type":"explode","peer":{}}`,
			`{"type":"upsert"}`,
			`{"type":"upsert","peer":{"label":""}}`,
			`{"type":"remove"}`,
			`null`,
			`[]`,
			`{"type":"snapshot","peers":"everyone"}`,
			`{"type":"upsert","peer":{"label":"x","endpoints":[`+strings.Repeat(`"127.0.0.1:1",`, wire.MaxEndpoints+1)+`"127.0.0.1:1"]}}`,
			strings.Repeat("[", 100000),
		)},
		{"truncated-event", func(t *testing.T, f *fixture, cn *hostile.Conn) {
			if err := cn.SendRaw(peerEventPrefix(t, f)); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated-then-closed", func(t *testing.T, f *fixture, cn *hostile.Conn) {
			if err := cn.SendBytes(peerEventPrefix(t, f)); err != nil {
				t.Fatal(err)
			}
			cn.Close()
		}},
		{"oversized-line", sendLines(oversized)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.connectPeer(t)
			stop := watchDevicePeer(f)
			old := f.Victim.Conn
			c.send(t, f, old)
			select {
			case <-old.Done():
				f.awaitVictim(t)
				t.Log("the victim dropped the stream and reconnected")
			case <-time.After(time.Second):
				t.Log("the victim kept the stream open")
			}
			// It still handles events: an empty bundle is refused (sync),
			// a legitimately issued one is accepted and gets through.
			f.sync(t)
			runAttacks(t, f, []attack{control})
			if missing, samples := stop(); missing > 0 {
				t.Errorf("the legitimate peer was missing from the victim's WireGuard device in %d of %d samples", missing, samples)
			}
			checkPeerUnharmed(t, f)
			st := waitStatus(t, f.Victim, "status", func(*agent.Status) bool { return true })
			if !st.Coordinator.Connected {
				t.Errorf("the victim is not connected to the coordinator: %+v", st.Coordinator)
			}
			if bytes.Contains([]byte(f.Victim.logs.String()), []byte("panic")) {
				t.Errorf("the victim's log mentions a panic")
			}
		})
	}
}
