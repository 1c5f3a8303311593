package testmesh_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// TestRenewalInvisibleUnderTraffic runs a mesh on the shortest machine
// certificates the CA issues (2 minutes, renewed after about one) until
// every agent has seen three of its own certificates expire, with
// datagrams flowing around the mesh the whole time. Renewal must be
// invisible: no datagram lost, no peer ever taken out of a WireGuard
// device. Agents hold long-lived HTTP/2 connections to the coordinator and
// the CA, and servers judge each request by the certificate of its
// connection's handshake: an agent still using connections opened with a
// certificate that has since expired gets its publishes refused, its peers
// drop it when the certificate they hold expires, and datagrams are lost.
//
// The server and every agent share one clock running clockSpeed times as
// fast as real time: every validity check (TLS handshakes on both sides,
// peer certificates, the CA's checks of each request) and every renewal
// decision reads it, while the traffic, the connections and the
// WireGuard devices stay real.
func TestRenewalInvisibleUnderTraffic(t *testing.T) {
	t.Parallel()
	const life = 2 * time.Minute
	const clockSpeed = 6
	clk := &testclock.Clock{}
	m := meshlab.NewInProc(t, meshlab.InProcOptions{Clock: clk, Config: func(cfg *ca.Config, _ string) {
		cfg.MachineCertLifetime = ca.Duration(life)
	}})
	nodes := []*meshlab.InProcNode{
		m.AddNode(t, "a", meshlab.NodeOptions{Clock: clk}),
		m.AddNode(t, "b", meshlab.NodeOptions{Clock: clk}),
		m.AddNode(t, "c", meshlab.NodeOptions{Clock: clk}),
	}
	for _, n := range nodes {
		udpEcho(t, n, 9000)
	}
	var streams []*udpStream
	for i, n := range nodes {
		streams = append(streams, startUDPStream(t, n, nodes[(i+1)%len(nodes)], 9000, 50*time.Millisecond))
	}
	fast, stopFast := context.WithCancel(t.Context())
	defer stopFast()
	go clk.RunFast(fast, clockSpeed)
	// Own certificates seen per node (serial → expiry), sampled as the
	// mesh runs.
	seen := make([]map[string]time.Time, len(nodes))
	for i := range seen {
		seen[i] = map[string]time.Time{}
	}
	expired := func() (least int) {
		least = 1 << 30
		for i, n := range nodes {
			st := n.Status(t)
			seen[i][st.Self.CertSerial] = st.Self.CertNotAfter
			k := 0
			for _, na := range seen[i] {
				if clk.Now().After(na) {
					k++
				}
			}
			least = min(least, k)
		}
		return least
	}
	const wantExpired = 3
	deadline := clk.Now().Add(wantExpired*life + 3*time.Minute)
	for expired() < wantExpired {
		if clk.Now().After(deadline) {
			t.Fatalf("after %s (of the clock) fewer than %d certificates of every node expired: %v", wantExpired*life+3*time.Minute, wantExpired, seen)
		}
		for _, s := range streams {
			s.mu.Lock()
			lostSoFar := s.sent - uint64(len(s.got))
			s.mu.Unlock()
			if lostSoFar > 20 { // fail early: a broken renewal loses everything from here on
				_, lost := s.stop(2 * time.Second)
				t.Fatalf("%s: %d datagrams lost so far (first %v)", s.name, len(lost), lost[:min(len(lost), 10)])
			}
		}
		time.Sleep(time.Second / clockSpeed) // a second of the clock between samples
	}
	stopFast()
	for _, s := range streams {
		sent, lost := s.stop(5 * time.Second)
		t.Logf("%s: %d datagrams sent, %d lost", s.name, sent, len(lost))
		if len(lost) > 0 {
			t.Errorf("%s lost %d of %d datagrams across renewals (first %v)", s.name, len(lost), sent, lost[:min(len(lost), 10)])
		}
	}
	for i, n := range nodes {
		if len(seen[i]) < wantExpired+1 {
			t.Errorf("%s went through %d certificates, want at least %d", n.Name, len(seen[i]), wantExpired+1)
		}
		if logs := n.Logs.String(); strings.Contains(logs, "peer removed") || strings.Contains(logs, "machine certificate expired") {
			t.Errorf("%s removed a peer or was refused during routine renewals:\n%s", n.Name, grepLines(logs, "peer removed", "expired", "renewal failed"))
		}
	}
}

// grepLines returns the lines of s that contain any of words.
func grepLines(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return fmt.Sprint(strings.Join(out, "\n"))
}
