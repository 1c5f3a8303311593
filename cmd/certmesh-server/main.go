// Command certmesh-server runs the certmesh CA and coordinator and offers
// the admin commands that talk to a running server.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/certmesh/certmesh/internal/cli"
)

func main() {
	root := &cobra.Command{
		Use:           "certmesh-server",
		Short:         "certmesh certificate authority and coordination server",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cli.AddVersion(root)
	root.AddCommand(initCmd(), runCmd(), backupCmd(), restoreCmd(), catchUpCmd(), relayKeyCmd(), tokensCmd("tokens"), tokensCmd("token"), devicesCmd(), usersCmd(), policyCmd(), ekCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "certmesh-server:", err)
		os.Exit(1)
	}
}
