// Command certmesh is the node agent and its CLI.
package main

import (
	"github.com/spf13/cobra"

	"github.com/certmesh/certmesh/internal/cli"
)

// defaultState is where the agent keeps keys and certificates.
const defaultState = "/var/lib/certmesh"

func main() {
	root := &cobra.Command{
		Use:   "certmesh",
		Short: "certmesh node agent",
		Long:  "certmesh node agent and its command line.\n\n" + cli.ExitCodesHelp,
	}
	pol := policyCmd()
	pol.AddCommand(policyShowCmd())
	cli.AddVersion(root)
	root.AddCommand(agentCmd(), statusCmd(), netcheckCmd(), loginCmd(), logoutCmd(), renewCmd(), pol, tpmCmd(), certCmd(), auditCmd(), dnsCmd())
	cli.Execute(root)
}
