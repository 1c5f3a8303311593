package main

import (
	"context"
	"fmt"
	"time"

	"github.com/certmesh/certmesh/agent/netcheck"
	"github.com/certmesh/certmesh/agent/relayc"
	"github.com/certmesh/certmesh/internal/cli"
	"github.com/spf13/cobra"
)

func netcheckCmd() *cobra.Command {
	var state, server string
	var stun, relays []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "netcheck",
		Short: "Report UDP, the public address, the NAT's mapping and each relay's latency",
		Long: "netcheck sends STUN Binding requests from one UDP socket to every STUN server and\n" +
			"compares the addresses they see (one address for all: an endpoint-independent NAT\n" +
			"that direct paths can be punched through), then pings each relay over UDP and TLS.\n" +
			"--server names the embedded relay of certmesh-server (UDP 3478 and 3479, TLS on the\n" +
			"server's port); --stun and --relay add others (a relay's UDP ports are STUN servers\n" +
			"too). Without --server and --relay it probes the relays the CA lists for the agent\n" +
			"running on --state. TLS relays are verified against that agent's pinned root.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := netcheck.Config{STUN: stun}
			if server != "" {
				s, err := netcheck.ServerRelay(server)
				if err != nil {
					return err
				}
				cfg.Relays = append(cfg.Relays, s)
			}
			for _, v := range relays {
				s, err := netcheck.ParseRelay(v)
				if err != nil {
					return err
				}
				cfg.Relays = append(cfg.Relays, s)
			}
			if server == "" && len(relays) == 0 {
				// The relays the CA lists for the agent running here.
				ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
				rs, err := netcheck.AgentRelays(ctx, state)
				cancel()
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "no relays to probe (%v): give --server or --relay\n", err)
				}
				cfg.Relays = rs
			}
			if roots, err := netcheck.StateRoots(state); err == nil {
				cfg.TLS = relayc.TLSConfig(roots, nil)
			}
			r, err := netcheck.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return cli.WriteJSON(cmd.OutOrStdout(), r)
			}
			return r.WriteText(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&state, "state", defaultState, "state directory of an enrolled agent (its pinned root verifies TLS relays)")
	cmd.Flags().StringVar(&server, "server", "", "certmesh server URL: probe its embedded relay and STUN ports")
	cmd.Flags().StringArrayVar(&stun, "stun", nil, "a STUN server host:port (repeatable)")
	cmd.Flags().StringArrayVar(&relays, "relay", nil, "a relay as name=N,udp=HOST:PORT,udp_alt=HOST:PORT,tls=HOST:PORT (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
