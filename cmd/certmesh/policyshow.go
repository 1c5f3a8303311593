package main

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/internal/cli"
	"github.com/spf13/cobra"
)

// policyShowCmd prints the policy the running agent enforces.
func policyShowCmd() *cobra.Command {
	return statusViewCmd("show", "Show the access policy the running agent enforces (version, signer, counters)",
		func(out io.Writer, st *agent.Status, asJSON bool) error {
			p := st.Policy
			if asJSON {
				return cli.WriteJSON(out, p)
			}
			if p.Version == 0 {
				fmt.Fprintln(out, "no valid policy: all inbound mesh traffic is dropped")
			} else {
				fmt.Fprintf(out, "version %d signed by %q at %s, valid until %s\n", p.Version, p.Signer,
					p.SignedAt.Local().Format(time.RFC3339), p.ValidUntil.Local().Format(time.RFC3339))
				if p.Stale {
					fmt.Fprintf(out, "stale: past its valid-until and no newer signing arrived (neither the CA nor the coordinator delivers it); --policy-stale %s\n", p.StalePolicy)
				}
			}
			if p.HighestVersion > p.Version {
				fmt.Fprintf(out, "highest version installed before: %d (no lower version is accepted)\n", p.HighestVersion)
			}
			if p.Refused != "" {
				fmt.Fprintf(out, "last refused document (%s): %s\n", p.RefusedAt.Local().Format(time.RFC3339), p.Refused)
			}
			for _, rc := range p.Counters.AcceptedByRule {
				name := fmt.Sprintf("rule %d", rc.Rule)
				if rc.Rule >= 0 && rc.Rule < len(p.Rules) && p.Rules[rc.Rule] != "" {
					name = p.Rules[rc.Rule]
				}
				fmt.Fprintf(out, "accepted %8d  %s\n", rc.Accepted, name)
			}
			reasons := make([]string, 0, len(p.Counters.Dropped))
			for r := range p.Counters.Dropped {
				reasons = append(reasons, string(r))
			}
			sort.Strings(reasons)
			for _, r := range reasons {
				for k, v := range p.Counters.Dropped {
					if string(k) == r && v > 0 {
						fmt.Fprintf(out, "dropped  %8d  %s\n", v, r)
					}
				}
			}
			return nil
		})
}
