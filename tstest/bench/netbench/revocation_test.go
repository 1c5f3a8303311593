package main

// BenchmarkRevocationLatency measures how long a revocation takes to reach
// agents, through the coordinator's relay and through the agents' own CRL
// fetch from the CA alone: a real CA (ca.Open, its HTTPS handler), real
// userspace agents with their wireguard-go devices, and tstest/hostile's
// coordinator, which speaks the real protocol and relays exactly what it is
// told (here: the CA's new CRLs, or nothing). Latency is from CA.Revoke
// being called to the revoked device's key leaving an observer's WireGuard
// device, per observer. netbench runs it with -benchtime 1x (revocation.go)
// and writes the section "Revocation latency" from its metrics.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/hostile"
)

// revMesh is the benchmark's deployment.
type revMesh struct {
	b     *testing.B
	dir   string
	ca    *ca.CA
	caURL string
	coord *hostile.Coordinator
	relay atomic.Bool // the coordinator relays the CA's CRLs

	mu       sync.Mutex
	requests map[int]int // CA answers to CRL and policy fetches, by status
	bytes    map[int]int64
}

func newRevMesh(b *testing.B) *revMesh {
	b.Helper()
	m := &revMesh{b: b, dir: b.TempDir(), requests: map[int]int{}, bytes: map[int]int64{}}
	state := filepath.Join(m.dir, "ca")
	if _, err := ca.Init(state, ca.InitOptions{TrustDomain: "corp.example"}); err != nil {
		b.Fatal(err)
	}
	tlsCert, err := tls.LoadX509KeyPair(filepath.Join(state, ca.ServerCertFile), filepath.Join(state, ca.ServerKeyFile))
	if err != nil {
		b.Fatal(err)
	}
	m.coord = hostile.New(b, tlsCert)
	cfg, err := ca.LoadConfig(state)
	if err != nil {
		b.Fatal(err)
	}
	cfg.CoordinatorURL = m.coord.URL()
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "config.json"), data, 0o600); err != nil {
		b.Fatal(err)
	}
	if m.ca, err = ca.Open(state, ca.Options{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.ca.Close() })
	m.ca.OnCRL(func(der []byte) {
		if m.relay.Load() {
			_ = m.coord.Send(&wire.Event{Type: wire.EventDocument, Doc: &wire.Document{Kind: wire.DocCRL, Data: der}})
		}
	})
	h := m.ca.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != wire.PathCRL && r.URL.Path != wire.PathPolicy {
			h.ServeHTTP(w, r)
			return
		}
		rec := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		m.mu.Lock()
		m.requests[rec.status]++
		m.bytes[rec.status] += rec.n
		m.mu.Unlock()
	}))
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs: m.ca.Roots().Pool(), GetCertificate: m.ca.GetCertificate}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	b.Cleanup(srv.Close)
	m.caURL = srv.URL
	return m
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(s int) { w.status = s; w.ResponseWriter.WriteHeader(s) }
func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// revNode is one running agent and its watch on the coordinator.
type revNode struct {
	agent *agent.Agent
	conn  *hostile.Conn
	self  certs.Identity
}

// start enrolls and runs an agent that fetches from the CA every interval.
func (m *revMesh) start(name string, interval time.Duration) *revNode {
	b := m.b
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, _, err := m.ca.CreateToken(ctx, nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(m.caURL)
	a, err := agent.New(ctx, agent.Config{
		StateDir: filepath.Join(m.dir, name), ServerURL: u, RootFingerprint: certs.FingerprintOf(m.ca.Roots().Certificates()[0]),
		Token: tok, Hostname: certs.Hostname(name), Mode: wgdev.Userspace,
		AdvertiseAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, AllowUnlogged: true,
		CAFetchInterval: interval, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(runCtx) }()
	b.Cleanup(func() { stop(); <-done })
	_, id := a.Bundle()
	cn, err := m.coord.WaitForAgent(ctx, id.DeviceID)
	if err != nil {
		b.Fatal(err)
	}
	return &revNode{agent: a, conn: cn, self: id}
}

// configured reports whether n's WireGuard device holds key k.
func (n *revNode) configured(b *testing.B, k certs.WireGuardKey) bool {
	ps, err := n.agent.Device().Peers()
	if err != nil {
		b.Fatal(err)
	}
	return slices.ContainsFunc(ps, func(p wgdev.PeerStats) bool { return p.PublicKey == k })
}

// revoke relays a new device to every observer, waits until each
// configured it, revokes it at the CA and returns, per observer, how long
// after the revocation its key left the observer's device.
func (m *revMesh) revoke(name string, observers []*revNode, deadline time.Duration) []time.Duration {
	b := m.b
	b.Helper()
	target := m.start(name, time.Hour)
	peer := wire.Peer{Label: string(target.self.DeviceID), Bundle: target.conn.Publish.Bundle, Endpoints: target.conn.Publish.Endpoints,
		Advertisement: target.conn.Publish.Advertisement}
	for _, o := range observers {
		if err := o.conn.Send(&wire.Event{Type: wire.EventUpsert, Peer: &peer}); err != nil {
			b.Fatal(err)
		}
	}
	for _, o := range observers {
		for end := time.Now().Add(30 * time.Second); !o.configured(b, target.self.WireGuardKey); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				b.Fatalf("observer %s did not configure %s", o.self.Hostname, name)
			}
		}
	}
	at := time.Now() // Revoke signs the new CRL and hands it to the relay before it returns
	if _, err := m.ca.Revoke(context.Background(), target.self.DeviceID); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, len(observers))
	left := len(observers)
	for left > 0 {
		for i, o := range observers {
			if lat[i] == 0 && !o.configured(b, target.self.WireGuardKey) {
				lat[i], left = time.Since(at), left-1
			}
		}
		if time.Since(at) > deadline {
			b.Fatalf("the revoked device %s is still configured on %d observers after %s", name, left, deadline)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return lat
}

func reportLatencies(b *testing.B, lat []time.Duration) {
	ms := make([]float64, len(lat))
	for i, d := range lat {
		ms[i] = float64(d.Microseconds()) / 1000
	}
	slices.Sort(ms)
	b.ReportMetric(median(ms), "ms-median")
	b.ReportMetric(ms[0], "ms-min")
	b.ReportMetric(ms[len(ms)-1], "ms-max")
	b.ReportMetric(float64(len(ms)), "samples")
}

func BenchmarkRevocationLatency(b *testing.B) {
	// Through the coordinator: it relays the CA's new CRL at once (as the
	// real one does); the agents' own fetch is an hour away.
	b.Run("coordinator", func(b *testing.B) {
		m := newRevMesh(b)
		m.relay.Store(true)
		var obs []*revNode
		for i := range revocationObservers {
			obs = append(obs, m.start("observer"+string(rune('a'+i)), time.Hour))
		}
		var lat []time.Duration
		for i := 0; b.Loop(); i++ {
			lat = append(lat, m.revoke(fmt.Sprintf("revoked%d", i), obs, time.Minute)...)
		}
		reportLatencies(b, lat)
	})
	// Through the CA fetch alone: the coordinator relays nothing; the
	// agents fetch every agent.DefaultCAFetchInterval (jittered ±10%,
	// conditional). One revocation, at a moment unrelated to the agents'
	// fetch phases (their starts are spread over the interval).
	b.Run("ca-fetch", func(b *testing.B) {
		m := newRevMesh(b)
		interval := agent.DefaultCAFetchInterval
		var obs []*revNode
		spread := interval / revocationObservers
		for i := range revocationObservers {
			if i > 0 {
				time.Sleep(spread) // spread the observers' fetch phases over the interval
			}
			obs = append(obs, m.start("observer"+string(rune('a'+i)), interval))
		}
		var lat []time.Duration
		for i := 0; b.Loop(); i++ {
			lat = append(lat, m.revoke(fmt.Sprintf("revoked%d", i), obs, interval+interval/10+30*time.Second)...)
		}
		reportLatencies(b, lat)
		m.mu.Lock()
		notModified, ok := m.requests[http.StatusNotModified], m.requests[http.StatusOK]
		var okBytes int64
		if ok > 0 {
			okBytes = m.bytes[http.StatusOK] / int64(ok)
		}
		m.mu.Unlock()
		b.ReportMetric(float64(notModified), "answers-304")
		b.ReportMetric(float64(ok), "answers-200")
		b.ReportMetric(float64(okBytes), "bytes/200")
		b.ReportMetric(handlerNsPer304(b, m.ca), "ns/304")
	})
}

// handlerNsPer304 is the CA handler's time for a conditional CRL request
// that it answers 304 (no TLS: what TLS costs is the same for every HTTPS
// request).
func handlerNsPer304(b *testing.B, c *ca.CA) float64 {
	h := c.Handler()
	etag := wire.ETag(c.CRL())
	const n = 20000
	start := time.Now()
	for range n {
		r := httptest.NewRequest(http.MethodGet, wire.PathCRL, nil)
		r.Header.Set("If-None-Match", etag)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusNotModified {
			b.Fatalf("conditional CRL request answered %d", w.Code)
		}
	}
	return float64(time.Since(start).Nanoseconds()) / n
}
