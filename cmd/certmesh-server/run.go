package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/coord"
	"github.com/spf13/cobra"
)

func runCmd() *cobra.Command {
	var state, listen, role string
	var debug bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Serve the CA and/or the coordinator over TLS",
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, log, state, listen, role)
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "state directory created by init")
	cmd.Flags().StringVar(&listen, "listen", "", "listen address (default from config)")
	cmd.Flags().StringVar(&role, "role", "all", "what to serve: ca, coord or all")
	cmd.Flags().BoolVar(&debug, "debug", false, "debug logging")
	_ = cmd.MarkFlagRequired("state")
	return cmd
}

func serve(ctx context.Context, log *slog.Logger, state, listen, role string) error {
	cfg, err := ca.LoadConfig(state)
	if err != nil {
		return err
	}
	if listen == "" {
		listen = cfg.Listen
	}
	roots, err := ca.LoadRoots(state, cfg.TrustDomain)
	if err != nil {
		return err
	}
	serveCA, serveCoord := role == "ca" || role == "all", role == "coord" || role == "all"
	if !serveCA && !serveCoord {
		return fmt.Errorf("--role %q: want ca, coord or all", role)
	}
	mux := http.NewServeMux()
	tlsCfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  roots.Pool(),
	}
	var authority *ca.CA
	if serveCA {
		if authority, err = ca.Open(state, ca.Options{Logger: log.With("component", "ca")}); err != nil {
			return err
		}
		defer authority.Close()
		mux.Handle("/v1/ca/", authority.Handler())
		tlsCfg.GetCertificate = authority.GetCertificate
	} else {
		kp, err := ca.LoadServerCertificate(state)
		if err != nil {
			return err
		}
		tlsCfg.Certificates = []tls.Certificate{*kp}
	}
	if serveCoord {
		opts := coord.Options{Logger: log.With("component", "coord")}
		if authority != nil {
			opts.Authorize = authority.DeviceActive
		}
		co := coord.New(roots, opts)
		if authority != nil {
			authority.OnRevoke(func(id certs.DeviceID) { co.Kick(id) })
		}
		mux.Handle("/v1/coord/", co.Handler())
	}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 2)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	var admin *http.Server
	if authority != nil {
		if admin, err = serveAdmin(state, authority, errc); err != nil {
			return err
		}
	}
	log.Info("certmesh-server running", "listen", ln.Addr().String(), "role", role, "trust_domain", cfg.TrustDomain,
		"root_fingerprint", certs.FingerprintOf(roots.Certificates()[0]))
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if admin != nil {
		_ = admin.Shutdown(shutdownCtx)
	}
	// Watch streams never end by themselves: close rather than wait.
	return srv.Close()
}

// serveAdmin serves the admin API on STATE/admin.sock, mode 0600.
func serveAdmin(state string, authority *ca.CA, errc chan<- error) (*http.Server, error) {
	sock := filepath.Join(state, ca.AdminSocketFile)
	_ = os.Remove(sock)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", sock)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("opening admin socket: %w", err)
	}
	srv := &http.Server{Handler: authority.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { errc <- srv.Serve(ln) }()
	return srv, nil
}
