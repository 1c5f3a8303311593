package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/internal/cli"
)

func dnsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dns", Short: "The agent's resolver for the trust domain"}
	var asJSON bool
	q := agentClientCmd("query NAME [TYPE]", "Show what the agent's resolver answers to NAME (type A by default; an IP address: its PTR) and why",
		func(cmd *cobra.Command, cl *agent.Client) error {
			args, qtype := cmd.Flags().Args(), ""
			if len(args) == 2 {
				qtype = args[1]
			}
			na, err := cl.DNSQuery(cmd.Context(), args[0], qtype)
			if err != nil {
				return err
			}
			if asJSON {
				return cli.WriteJSON(cmd.OutOrStdout(), na)
			}
			printNameAnswer(cmd.OutOrStdout(), na)
			return nil
		})
	q.Args = cobra.RangeArgs(1, 2)
	q.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(q)
	return cmd
}

func printNameAnswer(w io.Writer, na *agent.NameAnswer) {
	fmt.Fprintf(w, "%s %s: %s\n", na.Name, na.Type, na.Rcode)
	for _, r := range na.Records {
		fmt.Fprintf(w, "  %s\n", r)
	}
	switch {
	case na.Forwarded:
		fmt.Fprintf(w, "why: outside the trust domain: forwarded to [%s]\n", joinStrings(na.Upstreams))
	case len(na.Sources) == 0:
		fmt.Fprintf(w, "why: in the trust domain; no verified, unexpired, unrevoked certificate names it\n")
	default:
		fmt.Fprintf(w, "why: from the verified certificate(s):\n")
		for _, s := range na.Sources {
			fmt.Fprintf(w, "  %s  device %s  serial %s  expires %s\n", s.Hostname, s.DeviceID, s.Serial, s.NotAfter.Local().Format(time.RFC3339))
		}
	}
}
