package main

import (
	"fmt"
	"slices"

	"github.com/certmesh/certmesh/ca"
	"github.com/spf13/cobra"
)

func relayKeyCmd() *cobra.Command {
	var state, name, out string
	cmd := &cobra.Command{
		Use:   "relay-key",
		Short: "Write the key of a standalone relay (for certmesh-server run --role relay --relay-key FILE)",
		Long: "Derives the key of the relay NAME from the CA's relay master key (STATE/relay.key, which never leaves the CA's host) " +
			"and writes it to FILE, mode 0600. Each relay has its own key, so a relay can admit devices only to itself. " +
			"List the relay under relay.relays in config.json (name, udp, udp_alt, tls) so that agents get credentials for it.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := ca.WriteRelayKey(state, name, out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote the key of relay %q to %s: copy it to the relay host (mode 0600).\n", name, out)
			cfg, err := ca.LoadConfig(state)
			if err == nil && (cfg.Relay == nil || !slices.ContainsFunc(cfg.Relay.Relays, func(r ca.StandaloneRelay) bool { return r.Name == name })) {
				fmt.Fprintf(cmd.OutOrStdout(), "Relay %q is not under relay.relays in %s/config.json yet: agents get no credentials for it until it is.\n", name, state)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state", defaultState, "the CA's state directory")
	cmd.Flags().StringVar(&name, "name", "", "the relay's name (a DNS label, as in relay.relays)")
	cmd.Flags().StringVar(&out, "out", "", "file to write the key to")
	for _, f := range []string{"name", "out"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}
