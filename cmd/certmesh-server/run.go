package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/certmesh/certmesh/server"
	"github.com/spf13/cobra"
)

func runCmd() *cobra.Command {
	var state, listen, role, caURL string
	var debug bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Serve the CA and/or the coordinator over TLS",
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			r, err := server.ParseRole(role)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv, err := server.Start(server.Options{StateDir: state, Listen: listen, Role: r, Logger: log, CAURL: caURL})
			if err != nil {
				return err
			}
			return srv.Wait(ctx)
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "state directory created by init")
	cmd.Flags().StringVar(&listen, "listen", "", "listen address (default from config)")
	cmd.Flags().StringVar(&role, "role", "all", "what to serve: ca, coord or all")
	cmd.Flags().StringVar(&caURL, "ca-url", "", "with --role coord: the CA's URL, where the coordinator renews its TLS certificate (mTLS with the current one) and fetches the CRL, policy and log checkpoint it relays")
	cmd.Flags().BoolVar(&debug, "debug", false, "debug logging")
	_ = cmd.MarkFlagRequired("state")
	return cmd
}
