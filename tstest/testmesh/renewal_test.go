package testmesh_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/tstest/e2e"
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
	// A stream between every ordered pair, each counted from the datagram
	// after it flowed steadily.
	var streams []*e2e.UDPStream
	var from []uint64
	port := uint16(9000)
	for _, src := range nodes {
		for _, dst := range nodes {
			if src == dst {
				continue
			}
			s := meshlab.StartUDPStream(t, src, dst, port, 50*time.Millisecond)
			sent, _, _ := s.Snapshot()
			streams, from = append(streams, s), append(from, sent+1)
			port++
		}
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
		for i, s := range streams {
			// Fail early: a broken renewal loses everything from here on.
			// The last second's datagrams may still be in flight.
			sent, _, _ := s.Snapshot()
			if sent > from[i]+20 {
				if lost := s.Lost(from[i], sent-20); len(lost) > 20 {
					t.Fatalf("%s: %d datagrams lost so far (first %v)", s.Name, len(lost), lost[:min(len(lost), 10)])
				}
			}
		}
		time.Sleep(time.Second / clockSpeed) // a second of the clock between samples
	}
	stopFast()
	to := make([]uint64, len(streams))
	for i, s := range streams {
		to[i], _, _ = s.Snapshot()
	}
	time.Sleep(time.Second) // the last datagrams in flight
	for i, s := range streams {
		s.Stop()
		lost := s.Lost(from[i], to[i])
		t.Logf("%s: %d datagrams sent, %d lost", s.Name, to[i]-from[i]+1, len(lost))
		if len(lost) > 0 {
			t.Errorf("%s lost %d of %d datagrams across renewals (first %v)", s.Name, len(lost), to[i]-from[i]+1, lost[:min(len(lost), 10)])
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
