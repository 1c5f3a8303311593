// Package metricsrv serves a daemon's operational endpoints in plain HTTP
// on one local address: Prometheus metrics at /metrics, liveness at
// /healthz, readiness at /readyz and, opt-in, the Go profiler under
// /debug/pprof/. The roles give it their collectors and readiness checks;
// it imports none of them.
package metricsrv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/certmesh/certmesh/internal/httplimit"
)

// Config says where and what to serve.
type Config struct {
	// Addr is the TCP address (host:port); empty: nothing is served.
	Addr string
	// Public allows an address that is not loopback.
	Public bool
	// Pprof serves the Go profiler under /debug/pprof/.
	Pprof bool
}

// Check is one readiness condition: Fn returns why it does not hold.
type Check struct {
	Name string
	Fn   func() error
}

// ErrNotLoopback refuses a non-loopback address given without Public.
var ErrNotLoopback = errors.New("not a loopback address: metrics, /readyz and pprof are plain HTTP without authentication, " +
	"and they show the mesh's membership and (with pprof) this process's memory")

// CheckAddr validates addr as host:port, and as a loopback address
// (127.0.0.0/8, ::1 or localhost) unless public. An empty host means
// every interface, which is not loopback.
func CheckAddr(addr string, public bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port: %w", addr, err)
	}
	if port == "" {
		return fmt.Errorf("%q: want host:port: no port", addr)
	}
	if public {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q: %w", addr, ErrNotLoopback)
}

// Server is a running metrics endpoint.
type Server struct {
	reg  *prometheus.Registry
	http *http.Server
	ln   net.Listener
	log  *slog.Logger

	mu     sync.Mutex
	checks []Check
}

// Start validates c and listens. The registry holds the Go runtime and
// process collectors; the caller adds its own with Register. Until
// SetReady is called, /readyz answers 503 "starting".
func Start(c Config, log *slog.Logger) (*Server, error) {
	if err := CheckAddr(c.Addr, c.Public); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics on %s: %w", c.Addr, err)
	}
	s := &Server{reg: prometheus.NewRegistry(), ln: ln, log: log,
		checks: []Check{{Name: "started", Fn: func() error { return errors.New("starting") }}}}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	if c.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.http = httplimit.Server(mux, 0)
	s.http.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String(), "pprof", c.Pprof)
	return s, nil
}

// Addr is the address listened on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Register adds collectors to the registry.
func (s *Server) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := s.reg.Register(c); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

// SetReady replaces the readiness checks: /readyz is ready when all hold.
func (s *Server) SetReady(checks ...Check) {
	s.mu.Lock()
	s.checks = checks
	s.mu.Unlock()
}

// serveReady answers 200 when every check holds, else 503; the body has
// one line per check: "name: ok" or "name: why not".
func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	checks := s.checks
	s.mu.Unlock()
	var b strings.Builder
	ready := true
	for _, c := range checks {
		if err := c.Fn(); err != nil {
			ready = false
			fmt.Fprintf(&b, "%s: %v\n", c.Name, err)
		} else {
			fmt.Fprintf(&b, "%s: ok\n", c.Name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(b.String()))
}

// Close stops serving.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.http.Shutdown(ctx)
}
