package main

import (
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/certmesh/certmesh/internal/cli"
	"github.com/certmesh/certmesh/server"
	"github.com/spf13/cobra"
)

func runCmd() *cobra.Command {
	var state, listen, role, caURL, relayIP string
	var relay server.RelayOptions
	var logFlags cli.LogFlags
	var metrics cli.MetricsFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Serve the CA, the coordinator and the relay (TURN and STUN), or one of them",
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := server.ParseRole(role)
			if err != nil {
				return cli.Usage(err)
			}
			if listen != "" {
				if err := cli.CheckListen(listen); err != nil {
					return cli.Usagef("--listen: %w", err)
				}
			}
			log, err := logFlags.Logger()
			if err != nil {
				return err
			}
			ms, err := metrics.Start(log)
			if err != nil {
				return err
			}
			if ms != nil {
				defer ms.Close()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if relayIP != "" {
				if relay.PublicIP, err = netip.ParseAddr(relayIP); err != nil {
					return cli.Usagef("--relay-public-ip: %w", err)
				}
			}
			srv, err := server.Start(server.Options{StateDir: state, Listen: listen, Role: r, Logger: log, CAURL: caURL, Relay: relay})
			if err != nil {
				return err
			}
			if ms != nil {
				if err := ms.Register(srv.Collectors()...); err != nil {
					return err
				}
				ms.SetReady(srv.ReadyChecks()...)
			}
			return srv.Wait(ctx)
		},
	}
	cmd.Flags().StringVar(&state, "state", defaultState, "state directory created by init")
	cmd.Flags().StringVar(&listen, "listen", "", "listen address (default from config)")
	cmd.Flags().StringVar(&role, "role", "all", "what to serve: all (CA, coordinator and relay), ca (CA and relay), coord, or relay (a standalone TURN relay and STUN server: from a state directory holding config.json, root.crt, server.crt and server.key but no CA key, with --relay-key; TURN over TLS on --listen)")
	cmd.Flags().StringVar(&caURL, "ca-url", "", "with --role coord or relay: the CA's URL, where the server renews its TLS certificate (mTLS with the current one); a coordinator also fetches the CRL, policy and log checkpoint it relays")
	cmd.Flags().StringVar(&relay.UDP, "relay-udp", "", "UDP address of the relay's TURN and STUN (default relay.udp_listen, else the listen host on port 3478)")
	cmd.Flags().StringVar(&relay.UDPAlt, "relay-udp-alt", "", "second UDP address answering STUN (and TURN), for agents' NAT mapping test (default relay.udp_alt_listen, else the listen host on port 3479)")
	cmd.Flags().StringVar(&relayIP, "relay-public-ip", "", "IPv4 address of the relay that peers send to, put in every allocation (default relay.public_ip, else the UDP listen host, else the host's first global IPv4)")
	cmd.Flags().StringVar(&relay.KeyFile, "relay-key", "", "with --role relay: the relay's key file (0600), made on the CA's host by certmesh-server relay-key")
	logFlags.Add(cmd.Flags())
	metrics.Add(cmd.Flags())
	return cmd
}
