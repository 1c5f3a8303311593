// Command certmesh is the node agent and its CLI.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/certmesh/certmesh/internal/cli"
)

// defaultState is where the agent keeps keys and certificates.
const defaultState = "/var/lib/certmesh"

func main() {
	root := &cobra.Command{
		Use:           "certmesh",
		Short:         "certmesh node agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pol := policyCmd()
	pol.AddCommand(policyShowCmd())
	cli.AddVersion(root)
	root.AddCommand(agentCmd(), statusCmd(), netcheckCmd(), loginCmd(), logoutCmd(), renewCmd(), pol, tpmCmd(), certCmd(), auditCmd(), dnsCmd())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: exitUsage, err: err} })
	if err := root.Execute(); err != nil {
		if err != errDegraded { // --check printed its lines
			fmt.Fprintln(os.Stderr, "certmesh:", err)
		}
		os.Exit(exitCode(err))
	}
}
