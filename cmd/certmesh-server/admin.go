package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/ca/attest"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/cli"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/spf13/cobra"
)

// tokensCmd is `tokens`; named "token" it is the deprecated singular
// spelling, hidden, that still works.
func tokensCmd(name string) *cobra.Command {
	cmd := &cobra.Command{Use: name, Short: "Create, list and revoke enrollment tokens"}
	if name != "tokens" {
		cmd.Hidden, cmd.Deprecated = true, "use `certmesh-server tokens`"
	}
	var state string
	var tags []string
	var ttl time.Duration
	var count int
	var asJSON bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Create one-time enrollment tokens (each printed once, one a line)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			toks, err := ca.NewAdminClient(state).CreateTokens(c.Context(), ca.TokenRequest{Tags: tags, TTL: ca.Duration(ttl), Count: count})
			if err != nil {
				return err
			}
			if asJSON {
				return cli.WriteJSON(c.OutOrStdout(), toks)
			}
			for _, t := range toks {
				fmt.Fprintln(c.OutOrStdout(), t.Token)
			}
			return nil
		},
	}
	create.Flags().StringSliceVar(&tags, "tags", nil, "tags for the device that uses the token")
	create.Flags().DurationVar(&ttl, "ttl", 0, "token lifetime (default token_ttl from config; at most max_token_ttl)")
	create.Flags().IntVar(&count, "count", 1, fmt.Sprintf("how many tokens to create, for an MDM batch (at most %d)", ca.MaxTokenBatch))
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON: token, id, tags and expiry of each")
	list := listCmd("list", "List enrollment tokens (never their secrets)", &state, (*ca.AdminClient).Tokens,
		"ID\tSTATE\tTAGS\tCREATED\tEXPIRES\tUSED BY", func(t ca.TokenInfo) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", t.ID, t.State, orDash(joinTags(t.Tags)),
				t.CreatedAt.Local().Format(time.RFC3339), t.ExpiresAt.Local().Format(time.RFC3339), orDash(string(t.UsedBy)))
		})
	revoke := actionCmd("revoke ID", "Revoke an unused enrollment token: it enrolls nothing after", &state, (*ca.AdminClient).RevokeToken,
		func(t ca.TokenInfo) string { return fmt.Sprintf("revoked token %s", t.ID) })
	stateFlag(&state, create, list, revoke)
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func devicesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "devices", Short: "List and revoke enrolled devices"}
	var state string
	list := listCmd("list", "List enrolled devices", &state, listDevicesJSON,
		"ID\tHOSTNAME\tADDRESSES\tLEVEL\tTAGS\tROUTES\tSTATE\tCERT EXPIRES", func(d deviceJSON) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", d.ID, d.Hostname, strings.Join(cli.Strings(d.Addresses), ","), d.Attestation,
				joinTags(d.Tags), orDash(strings.Join(cli.Strings(d.Routes), ",")), d.State, d.NotAfter.Local().Format(time.RFC3339))
		})
	var revokeReason string
	revoke := actionCmd("revoke ID|HOSTNAME", "Revoke a device: it can no longer renew and peers drop it", &state,
		func(a *ca.AdminClient, ctx context.Context, ref string) (store.Device, error) {
			return a.RevokeFor(ctx, ref, revokeReason)
		},
		func(d store.Device) string { return fmt.Sprintf("revoked %s (%s)", d.ID, d.Hostname) })
	reasons := make([]string, len(ca.DeviceRevokeReasons))
	for i, r := range ca.DeviceRevokeReasons {
		reasons[i] = r.String()
	}
	revoke.Flags().StringVar(&revokeReason, "reason", "cessationOfOperation", "RFC 5280 reason in the CRL entry and the log: "+strings.Join(reasons, "|")+" (keyCompromise for a stolen device)")
	pending := listCmd("pending", "List enrollments waiting for approval (approval: required)", &state, (*ca.AdminClient).Pending,
		"ID\tHOSTNAME\tLEVEL\tEK SHA-256\tTPM\tFROM\tREQUESTED\tTOKEN\tSTATE", func(p store.PendingEnrollment) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", p.ID, p.Hostname, p.Attestation, orDash(p.EKFP),
				orDash(p.Manufacturer), p.RemoteAddr, p.RequestedAt.Local().Format(time.RFC3339), orDash(p.TokenID), p.State)
		})
	approve := actionCmd("approve ID|HOSTNAME...", "Approve pending enrollments: each device gets its certificate", &state, (*ca.AdminClient).Approve,
		func(d store.Device) string { return fmt.Sprintf("approved: device %s (%s)", d.ID, d.Hostname) })
	approve.Args = cobra.MinimumNArgs(1)
	var reason string
	deny := actionCmd("deny ID|HOSTNAME", "Deny a pending enrollment: the agent stops with the reason", &state,
		func(a *ca.AdminClient, ctx context.Context, id string) (store.PendingEnrollment, error) {
			return a.Deny(ctx, id, reason)
		},
		func(p store.PendingEnrollment) string { return fmt.Sprintf("denied %s (%s)", p.ID, p.Hostname) })
	deny.Flags().StringVar(&reason, "reason", "", "reason shown to the device")
	stateFlag(&state, list, revoke, pending, approve, deny)
	cmd.AddCommand(list, revoke, pending, approve, deny, asksCmd("routes", &state), asksCmd("services", &state))
	return cmd
}

func usersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "List, approve and remove users who log in through the identity provider"}
	var state string
	list := listCmd("list", "List users (pending ones wait for approval)", &state, (*ca.AdminClient).Users,
		"ID\tEMAIL\tGROUPS\tSTATE\tDEVICES\tLAST LOGIN", func(u store.User) string {
			groups := make([]string, len(u.Groups))
			for i, g := range u.Groups {
				groups[i] = string(g)
			}
			last := "-"
			if !u.LastLogin.IsZero() {
				last = u.LastLogin.Local().Format(time.RFC3339)
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%s", u.ID, u.Email, strings.Join(groups, ","), u.State, len(u.Devices), last)
		})
	done := func(what string) func(store.User) string {
		return func(u store.User) string { return fmt.Sprintf("%s %s (%s)", what, u.Email, u.ID) }
	}
	approve := actionCmd("approve ID|EMAIL", "Approve a new user's first login", &state, (*ca.AdminClient).ApproveUser, done("approved"))
	remove := actionCmd("remove ID|EMAIL", "Forget a user: their next login is a first login again", &state, (*ca.AdminClient).RemoveUser, done("removed"))
	revoke := actionCmd("revoke ID|EMAIL", "Revoke every current certificate of a user and block the user's logins", &state, (*ca.AdminClient).RevokeUser, done("revoked"))
	stateFlag(&state, list, approve, remove, revoke)
	cmd.AddCommand(list, approve, remove, revoke)
	return cmd
}

// joinTags is tags comma-separated.
func joinTags(tags []certs.Tag) string {
	s := make([]string, len(tags))
	for i, t := range tags {
		s[i] = string(t)
	}
	return strings.Join(s, ",")
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
	var showJSON bool
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the current policy version and source",
		RunE: func(c *cobra.Command, _ []string) error {
			info, err := ca.NewAdminClient(state).Policy(c.Context())
			if err != nil {
				return err
			}
			if showJSON {
				return cli.WriteJSON(c.OutOrStdout(), info)
			}
			fmt.Fprintf(c.OutOrStdout(), "// version %d, signed by %q at %s\n%s", info.Version, info.Signer, info.SignedAt.Local().Format(time.RFC3339), info.Source)
			return nil
		},
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON: version, signer, signing time and source")
	stateFlag(&state, publish, show)
	cmd.AddCommand(publish, show)
	return cmd
}

// ekCmd is `eks`; named "ek" it is the older singular spelling, hidden,
// that still works.
func ekCmd(name string) *cobra.Command {
	cmd := &cobra.Command{Use: name, Short: "Manage the allow-list of TPM endorsement keys (SHA-256 fingerprints)"}
	if name != "eks" {
		cmd.Hidden, cmd.Deprecated = true, "use `certmesh-server eks`"
	}
	var state string
	print := func(c *cobra.Command, fps []string) {
		for _, fp := range fps {
			fmt.Fprintln(c.OutOrStdout(), fp)
		}
	}
	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List allow-listed EK fingerprints",
		RunE: func(c *cobra.Command, _ []string) error {
			fps, err := ca.NewAdminClient(state).EKs(c.Context())
			switch {
			case err != nil:
				return err
			case listJSON:
				if fps == nil {
					fps = []string{}
				}
				return cli.WriteJSON(c.OutOrStdout(), fps)
			}
			print(c, fps)
			return nil
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON: a list of fingerprints")
	set := func(use, short string, remove bool) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.MinimumNArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				_, err := ca.NewAdminClient(state).SetEKs(c.Context(), args, remove)
				return err
			},
		}
	}
	add := set("add FINGERPRINT...", "Allow TPMs by EK fingerprint (from `certmesh tpm ek` or an MDM export)", false)
	remove := set("remove FINGERPRINT...", "Remove EK fingerprints from the allow-list", true)
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
	stateFlag(&state, list, add, remove, imp)
	cmd.AddCommand(list, add, remove, imp)
	return cmd
}
