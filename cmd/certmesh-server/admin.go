package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/ca/attest"
	"github.com/spf13/cobra"
)

func tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage enrollment tokens"}
	var state string
	var tags []string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a one-time enrollment token (printed once)",
		RunE: func(c *cobra.Command, _ []string) error {
			resp, err := ca.NewAdminClient(state).CreateToken(c.Context(), ca.TokenRequest{Tags: tags, TTL: ca.Duration(ttl)})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), resp.Token)
			return nil
		},
	}
	create.Flags().StringVar(&state, "state", "", "state directory of the running server")
	create.Flags().StringSliceVar(&tags, "tags", nil, "tags for the device that uses the token")
	create.Flags().DurationVar(&ttl, "ttl", 0, "token lifetime (default from config)")
	_ = create.MarkFlagRequired("state")
	cmd.AddCommand(create)
	return cmd
}

func devicesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "devices", Short: "List and revoke enrolled devices"}
	var state string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List enrolled devices",
		RunE: func(c *cobra.Command, _ []string) error {
			devs, err := ca.NewAdminClient(state).Devices(c.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(c.OutOrStdout(), devs)
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tHOSTNAME\tADDRESSES\tLEVEL\tTAGS\tSTATE\tCERT EXPIRES")
			for _, d := range devs {
				addrs := make([]string, len(d.Addresses))
				for i, a := range d.Addresses {
					addrs[i] = a.String()
				}
				tags := make([]string, len(d.Tags))
				for i, t := range d.Tags {
					tags[i] = string(t)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Hostname, strings.Join(addrs, ","), d.Attestation,
					strings.Join(tags, ","), d.State, d.NotAfter.Local().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a device: it can no longer renew and peers drop it",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			d, err := ca.NewAdminClient(state).Revoke(c.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "revoked %s (%s)\n", d.ID, d.Hostname)
			return nil
		},
	}
	pending := &cobra.Command{
		Use:   "pending",
		Short: "List enrollments waiting for approval (approval: required)",
		RunE: func(c *cobra.Command, _ []string) error {
			ps, err := ca.NewAdminClient(state).Pending(c.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(c.OutOrStdout(), ps)
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tHOSTNAME\tLEVEL\tEK SHA-256\tTPM\tFROM\tREQUESTED\tTOKEN\tSTATE")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Hostname, p.Attestation, orDash(p.EKFP),
					orDash(p.Manufacturer), p.RemoteAddr, p.RequestedAt.Local().Format(time.RFC3339), orDash(p.TokenID), p.State)
			}
			return tw.Flush()
		},
	}
	pending.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	approve := &cobra.Command{
		Use:   "approve ID",
		Short: "Approve a pending enrollment: the device gets its certificate",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			d, err := ca.NewAdminClient(state).Approve(c.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "approved: device %s (%s)\n", d.ID, d.Hostname)
			return nil
		},
	}
	var reason string
	deny := &cobra.Command{
		Use:   "deny ID",
		Short: "Deny a pending enrollment: the agent stops with the reason",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			p, err := ca.NewAdminClient(state).Deny(c.Context(), args[0], reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "denied %s (%s)\n", p.ID, p.Hostname)
			return nil
		},
	}
	deny.Flags().StringVar(&reason, "reason", "", "reason shown to the device")
	for _, c := range []*cobra.Command{list, revoke, pending, approve, deny} {
		c.Flags().StringVar(&state, "state", "", "state directory of the running server")
		_ = c.MarkFlagRequired("state")
	}
	cmd.AddCommand(list, revoke, pending, approve, deny)
	return cmd
}

func usersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "List, approve and remove users who log in through the identity provider"}
	var state string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List users (pending ones wait for approval)",
		RunE: func(c *cobra.Command, _ []string) error {
			users, err := ca.NewAdminClient(state).Users(c.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(c.OutOrStdout(), users)
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tEMAIL\tGROUPS\tSTATE\tDEVICES\tLAST LOGIN")
			for _, u := range users {
				groups := make([]string, len(u.Groups))
				for i, g := range u.Groups {
					groups[i] = string(g)
				}
				last := "-"
				if !u.LastLogin.IsZero() {
					last = u.LastLogin.Local().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", u.ID, u.Email, strings.Join(groups, ","), u.State, len(u.Devices), last)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	approve := &cobra.Command{
		Use:   "approve ID|EMAIL",
		Short: "Approve a new user's first login",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			u, err := ca.NewAdminClient(state).ApproveUser(c.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "approved %s (%s)\n", u.Email, u.ID)
			return nil
		},
	}
	remove := &cobra.Command{
		Use:   "remove ID|EMAIL",
		Short: "Forget a user: their next login is a first login again",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			u, err := ca.NewAdminClient(state).RemoveUser(c.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "removed %s (%s)\n", u.Email, u.ID)
			return nil
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID|EMAIL",
		Short: "Revoke every current certificate of a user and block the user's logins",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			u, err := ca.NewAdminClient(state).RevokeUser(c.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "revoked %s (%s)\n", u.Email, u.ID)
			return nil
		},
	}
	for _, c := range []*cobra.Command{list, approve, remove, revoke} {
		c.Flags().StringVar(&state, "state", "", "state directory of the running server")
		_ = c.MarkFlagRequired("state")
	}
	cmd.AddCommand(list, approve, remove, revoke)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Publish and show the signed access policy"}
	var state string
	publish := &cobra.Command{
		Use:   "publish FILE",
		Short: "Check, sign and publish a policy as the next version (refused if its tests fail)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			src, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			info, err := ca.NewAdminClient(state).PublishPolicy(c.Context(), src)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "published policy version %d (signed by %q); agents install it as the coordinator relays it\n", info.Version, info.Signer)
			return nil
		},
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the current policy version and source",
		RunE: func(c *cobra.Command, _ []string) error {
			info, err := ca.NewAdminClient(state).Policy(c.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "// version %d, signed by %q at %s\n%s", info.Version, info.Signer, info.SignedAt.Local().Format(time.RFC3339), info.Source)
			return nil
		},
	}
	for _, c := range []*cobra.Command{publish, show} {
		c.Flags().StringVar(&state, "state", "", "state directory of the running server")
		_ = c.MarkFlagRequired("state")
	}
	cmd.AddCommand(publish, show)
	return cmd
}

func ekCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ek", Short: "Manage the allow-list of TPM endorsement keys (SHA-256 fingerprints)"}
	var state string
	print := func(c *cobra.Command, fps []string) {
		for _, fp := range fps {
			fmt.Fprintln(c.OutOrStdout(), fp)
		}
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List allow-listed EK fingerprints",
		RunE: func(c *cobra.Command, _ []string) error {
			fps, err := ca.NewAdminClient(state).EKs(c.Context())
			if err == nil {
				print(c, fps)
			}
			return err
		},
	}
	add := &cobra.Command{
		Use:   "add FINGERPRINT...",
		Short: "Allow TPMs by EK fingerprint (from `certmesh tpm ek` or an MDM export)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			_, err := ca.NewAdminClient(state).SetEKs(c.Context(), args, false)
			return err
		},
	}
	remove := &cobra.Command{
		Use:   "remove FINGERPRINT...",
		Short: "Remove EK fingerprints from the allow-list",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			_, err := ca.NewAdminClient(state).SetEKs(c.Context(), args, true)
			return err
		},
	}
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Allow every EK fingerprint in FILE (one per line, # comments)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			set, err := attest.ParseAllowList(f)
			if err != nil {
				return err
			}
			var fps []string
			for fp, ok := range set {
				if ok {
					fps = append(fps, fp.String())
				}
			}
			all, err := ca.NewAdminClient(state).SetEKs(c.Context(), fps, false)
			if err == nil {
				fmt.Fprintf(c.OutOrStdout(), "imported %d; %d EKs allowed\n", len(fps), len(all))
			}
			return err
		},
	}
	for _, c := range []*cobra.Command{list, add, remove, imp} {
		c.Flags().StringVar(&state, "state", "", "state directory of the running server")
		_ = c.MarkFlagRequired("state")
	}
	cmd.AddCommand(list, add, remove, imp)
	return cmd
}

// writeJSON prints v as indented JSON (the --json output of every command).
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
