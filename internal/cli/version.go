package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/certmesh/certmesh/internal/version"
)

// AddVersion gives a program's root command `--version` and a
// `version [--json]` subcommand, both printing what internal/version knows
// about this binary.
func AddVersion(root *cobra.Command) {
	info := version.Get()
	root.Version = info.Version
	root.SetVersionTemplate(info.Line(root.Name()) + "\n")
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "print this binary's version, commit and build date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				return WriteJSON(cmd.OutOrStdout(), info)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), info.Line(root.Name()))
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	root.AddCommand(cmd)
}
