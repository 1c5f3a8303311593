package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/cli"
	"github.com/spf13/cobra"
)

// listCmd lists what list returns from the running server's admin API,
// as a table (header, then one tab-separated row a record) or with
// --json as JSON.
func listCmd[T any](use, short string, state *string, list func(*ca.AdminClient, context.Context) ([]T, error), header string, row func(T) string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(c *cobra.Command, _ []string) error {
			recs, err := list(ca.NewAdminClient(*state), c.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return cli.WriteJSON(c.OutOrStdout(), recs)
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, header)
			for _, r := range recs {
				fmt.Fprintln(tw, row(r))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// actionCmd acts on the record its argument names (or, with Args set to
// take more, on each in turn) through the running server's admin API and
// prints what done says of each result. The first refusal stops it,
// naming the argument; what was done before stays done, and was printed.
func actionCmd[T any](use, short string, state *string, act func(*ca.AdminClient, context.Context, string) (T, error), done func(T) string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl := ca.NewAdminClient(*state)
			for _, arg := range args {
				v, err := act(cl, c.Context(), arg)
				if err != nil {
					if len(args) > 1 {
						return fmt.Errorf("%s: %w", arg, err)
					}
					return err
				}
				fmt.Fprintln(c.OutOrStdout(), done(v))
			}
			return nil
		},
	}
}

// stateFlag adds the --state flag (default: defaultState) to each of cmds.
func stateFlag(state *string, cmds ...*cobra.Command) {
	for _, c := range cmds {
		c.Flags().StringVar(state, "state", defaultState, "state directory of the running server")
	}
}
