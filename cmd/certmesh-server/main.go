// Command certmesh-server runs the certmesh CA and coordinator and offers
// the admin commands that talk to a running server.
package main

import (
	"github.com/spf13/cobra"

	"github.com/certmesh/certmesh/internal/cli"
)

// defaultState is the server's state directory unless --state says
// otherwise (the packages' and the systemd unit's StateDirectory).
const defaultState = "/var/lib/certmesh-server"

func main() {
	root := &cobra.Command{
		Use:   "certmesh-server",
		Short: "certmesh certificate authority and coordination server",
		Long:  "certmesh certificate authority and coordination server, and the admin commands that talk to it.\n\n" + cli.ExitCodesHelp,
	}
	cli.AddVersion(root)
	root.AddCommand(initCmd(), runCmd(), backupCmd(), restoreCmd(), catchUpCmd(), relayKeyCmd(), tokensCmd("tokens"), tokensCmd("token"), devicesCmd(), usersCmd(), policyCmd(), ekCmd("eks"), ekCmd("ek"))
	cli.Execute(root)
}
