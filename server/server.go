// Package server wires the CA, the coordinator and the relay (TURN over TLS
// by ALPN on the same port, TURN and STUN on UDP) into one TLS listener and
// the CA's admin API onto a unix socket: what `certmesh-server run` serves,
// usable in-process by tests.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/coord"
	"github.com/certmesh/certmesh/internal/httplimit"
	"github.com/certmesh/certmesh/internal/statedir"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/relay"
)

// Role says which halves a server runs.
type Role string

// The roles.
const (
	RoleAll   Role = "all"
	RoleCA    Role = "ca"
	RoleCoord Role = "coord"
	// RoleRelay runs only the TURN relay and STUN server, from a state
	// directory without CA keys (like RoleCoord's) and its own relay key.
	RoleRelay Role = "relay"
)

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAll, RoleCA, RoleCoord, RoleRelay:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want ca, coord, relay or all", s)
}

// Options configure a server.
type Options struct {
	StateDir string
	// Listen is the TCP address (default: the config's); ignored when
	// Listener is set.
	Listen   string
	Listener net.Listener
	Role     Role
	Logger   *slog.Logger
	// Now is the CA's and coordinator's clock (tests).
	Now func() time.Time
	// BodyTimeout bounds how long a request body may take to arrive
	// (default httplimit.BodyTimeout).
	BodyTimeout time.Duration
	// CAURL is where a coordinator-only server (RoleCoord) renews its TLS
	// certificate; empty: it is never renewed. ServerCertCheck is how often
	// it checks (default DefaultServerCertCheck).
	CAURL           string
	ServerCertCheck time.Duration
	// DocFetch is how often a coordinator-only server with a CAURL fetches
	// the CA's CRL, policy and log checkpoint to relay them, and a
	// standalone relay the CRL (default DefaultDocFetch).
	DocFetch time.Duration
	// ShutdownTimeout bounds a graceful shutdown (default
	// DefaultShutdownTimeout): requests in flight may finish within it,
	// then what is left is cut.
	ShutdownTimeout time.Duration
	// Relay overrides the relay settings of config.json.
	Relay RelayOptions
}

// DefaultShutdownTimeout is how long Close lets requests in flight finish.
const DefaultShutdownTimeout = 10 * time.Second

// Server is a running certmesh-server.
type Server struct {
	CA    *ca.CA // nil for RoleCoord and RoleRelay
	Coord *coord.Server
	Relay *relay.Relay // nil unless embedded (default) or RoleRelay
	Addr  net.Addr

	log    *slog.Logger
	https  *http.Server
	admin  *http.Server
	crl    *http.Server
	stopBG context.CancelFunc
	// coordCert is the TLS certificate of a coordinator-only server.
	coordCert *coordCert
	errc      chan error
	// shutdownTimeout: Options.ShutdownTimeout.
	shutdownTimeout time.Duration
}

// Start opens the state directory and starts serving.
func Start(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Role == "" {
		o.Role = RoleAll
	}
	cfg, err := ca.LoadConfig(o.StateDir)
	if err != nil {
		return nil, err
	}
	roots, err := ca.LoadRoots(o.StateDir, cfg.TrustDomain)
	if err != nil {
		return nil, err
	}
	serveCA, serveCoord := o.Role == RoleCA || o.Role == RoleAll, o.Role == RoleCoord || o.Role == RoleAll
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	s := &Server{log: o.Logger, errc: make(chan error, 2), shutdownTimeout: o.ShutdownTimeout}
	mux := http.NewServeMux()
	// Time: client certificates are judged by the CA's and coordinator's
	// clock, the one that issued them and checks every request.
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: roots.Pool(), Time: o.Now}
	if serveCA {
		if s.CA, err = ca.Open(o.StateDir, ca.Options{Logger: o.Logger.With("component", "ca"), Now: o.Now}); err != nil {
			return nil, err
		}
		h := s.CA.Handler()
		mux.Handle("/v1/ca/", h)
		mux.Handle("/v1/login/", h)
		mux.Handle("/v1/relay/", h)
		lh, err := s.CA.LogHandler()
		if err != nil {
			s.closeCA()
			return nil, err
		}
		mux.Handle("/v1/log/", lh)
		if err := s.mountConsole(mux, cfg, lh, roots, o); err != nil {
			s.closeCA()
			return nil, err
		}
		tlsCfg.GetCertificate = s.CA.GetCertificate
	} else {
		if s.coordCert, err = newCoordCert(o.StateDir, o.CAURL, roots, o.Now, o.Logger.With("component", "coord-tls")); err != nil {
			return nil, err
		}
		tlsCfg.GetCertificate = s.coordCert.GetCertificate
	}
	if serveCoord {
		opts := coord.Options{Logger: o.Logger.With("component", "coord"), Now: o.Now}
		if s.CA != nil {
			opts.Authorize = s.CA.DeviceActive
		}
		s.Coord = coord.New(roots, opts)
		if s.CA != nil {
			s.CA.OnRevoke(func(id certs.DeviceID) { s.Coord.Kick(id) })
			s.CA.OnReissue(s.Coord.Reissue)
			s.CA.OnPolicy(func(doc []byte) { s.relay(wire.DocPolicy, doc) })
			if doc := s.CA.Policy(); doc != nil {
				s.relay(wire.DocPolicy, doc)
			}
			s.CA.OnCheckpoint(func(cp []byte) { s.relay(wire.DocCheckpoint, cp) })
			if cp := s.CA.Checkpoint(); cp != nil { // none while restored and catching up
				s.relay(wire.DocCheckpoint, cp)
			}
			s.CA.OnCRL(func(der []byte) { s.relay(wire.DocCRL, der) })
			if der := s.CA.CRL(); der != nil {
				s.relay(wire.DocCRL, der)
			}
		}
		mux.Handle("/v1/coord/", s.Coord.Handler())
	}
	ln := o.Listener
	if ln == nil {
		listen := o.Listen
		if listen == "" {
			listen = cfg.Listen
		}
		if ln, err = net.Listen("tcp", listen); err != nil {
			s.closeCA()
			return nil, fmt.Errorf("listening on %s: %w", listen, err)
		}
	}
	s.Addr = ln.Addr()
	s.https = httplimit.Server(mux, o.BodyTimeout)
	s.https.TLSConfig, s.https.ErrorLog = tlsCfg, slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug)
	if err := s.startRelay(o, cfg); err != nil {
		_ = ln.Close()
		s.closeCA()
		return nil, err
	}
	if s.Coord != nil {
		// Watch streams never end by themselves: at shutdown the
		// coordinator ends them, without announcing anyone as leaving.
		s.https.RegisterOnShutdown(s.Coord.Shutdown)
	}
	go func() { s.errc <- s.https.ServeTLS(ln, "", "") }()
	if s.CA != nil && cfg.CRLListen != "" {
		if err := s.serveCRL(cfg.CRLListen); err != nil {
			_ = s.https.Close()
			s.closeRelay()
			s.closeCA()
			return nil, err
		}
	}
	if s.coordCert != nil {
		bg, cancel := context.WithCancel(context.Background())
		s.stopBG = cancel
		go s.coordCert.run(bg, o.ServerCertCheck)
		if u := s.coordCert.caURL; u != nil && s.Coord != nil {
			go newDocRelay(u, s.coordCert.transport(), s.Coord, o.Logger.With("component", "coord-relay")).run(bg, o.DocFetch)
		}
		if u := s.coordCert.caURL; u != nil && s.Relay != nil && o.Role == RoleRelay {
			log := o.Logger.With("component", "relay-crl")
			rc := &relayCRL{roots: roots, cert: s.coordCert.current, relay: s.Relay, now: o.Now, log: log}
			go newDocFetch(u, s.coordCert.transport(), []caDoc{{wire.DocCRL, wire.PathCRL}}, rc.offer, log).run(bg, o.DocFetch)
		}
	}
	if s.CA != nil {
		bg, cancel := context.WithCancel(context.Background())
		s.stopBG = cancel
		go s.CA.RunCRL(bg)
		go s.CA.RunPolicy(bg)
		if err := s.serveAdmin(o.StateDir); err != nil {
			_ = s.https.Close()
			s.closeRelay()
			s.closeCA()
			return nil, err
		}
	}
	o.Logger.Info("certmesh-server running", "listen", s.Addr.String(), "role", o.Role, "trust_domain", cfg.TrustDomain,
		"root_fingerprint", certs.FingerprintOf(roots.Certificates()[0]))
	return s, nil
}

// serveCRL serves the current CRL over plain HTTP at /crl (a CRL is
// signed; other tools fetch it without TLS, as CRL distribution does).
func (s *Server) serveCRL(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for CRL on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /crl", s.CA.ServeCRL)
	if lh, err := s.CA.LogHandler(); err == nil {
		mux.Handle("/v1/log/", lh) // the log is public and signed: plain HTTP for auditors' tools
	}
	s.crl = httplimit.Server(mux, 0)
	go func() { s.errc <- s.crl.Serve(ln) }()
	return nil
}

// serveAdmin serves the admin API on STATE/admin.sock, mode 0600 (never
// replacing a socket that another process answers on).
func (s *Server) serveAdmin(state string) error {
	ln, err := statedir.ListenUnix(filepath.Join(state, ca.AdminSocketFile))
	if err != nil {
		return fmt.Errorf("opening admin socket: %w", err)
	}
	s.admin = httplimit.Server(s.CA.AdminHandler(), 0)
	s.admin.ConnContext = ca.AdminConnContext // the log names who ran each command
	go func() { s.errc <- s.admin.Serve(ln) }()
	return nil
}

// relay hands a signed document to the coordinator.
func (s *Server) relay(kind wire.DocKind, doc []byte) {
	if err := s.Coord.SetDocument(kind, doc); err != nil {
		s.log.Error("relaying document", "kind", kind, "err", err)
	}
}

// closeRelay stops the relay on a failed Start.
func (s *Server) closeRelay() {
	if s.Relay != nil {
		_ = s.Relay.Close()
	}
}

// closeCA closes the CA's databases and releases the state directory.
// On a failed Start its error adds nothing to the one returned.
func (s *Server) closeCA() error {
	if s.CA == nil {
		return nil
	}
	if err := s.CA.Close(); err != nil {
		return fmt.Errorf("closing the CA's databases: %w", err)
	}
	return nil
}

// Wait serves until ctx ends or a listener fails, then closes everything.
func (s *Server) Wait(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-s.errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	return errors.Join(err, s.Close())
}

// Close shuts down gracefully: the listeners close, watch streams end
// (agents keep their peers: a coordinator going away is not a peer
// leaving), and requests in flight may finish within the shutdown
// timeout; then whatever is left is cut and the databases are closed.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
	defer cancel()
	if s.stopBG != nil {
		s.stopBG()
	}
	shutdown := func(h *http.Server, name string) error {
		if h == nil {
			return nil
		}
		err := h.Shutdown(ctx)
		if err == nil {
			return nil
		}
		s.log.Warn("graceful shutdown did not finish in time; cutting the remaining connections", "server", name, "timeout", s.shutdownTimeout, "err", err)
		return h.Close()
	}
	// All three at once: they share the deadline.
	errs := make(chan error, 3)
	go func() { errs <- shutdown(s.admin, "admin") }()
	go func() { errs <- shutdown(s.crl, "crl") }()
	go func() { errs <- shutdown(s.https, "https") }()
	var err error
	for range 3 {
		err = errors.Join(err, <-errs)
	}
	if s.Relay != nil {
		err = errors.Join(err, s.Relay.Close())
	}
	return errors.Join(err, s.closeCA())
}
