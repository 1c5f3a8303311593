package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/cli"
	"github.com/spf13/cobra"
)

func initCmd() *cobra.Command {
	var state, td, overlay, listen, storeURL string
	var emailDomains []string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new CA: root, intermediate, config and database",
		RunE: func(cmd *cobra.Command, _ []string) error {
			domain, err := certs.ParseTrustDomain(td)
			if err != nil {
				return cli.Usagef("--trust-domain: %w", err)
			}
			var o netip.Prefix
			if overlay != "" {
				if o, err = netip.ParsePrefix(overlay); err != nil {
					return cli.Usagef("--overlay: %w", err)
				}
			}
			if err := cli.CheckListen(listen); err != nil {
				return cli.Usagef("--listen: %w (nothing was created)", err)
			}
			fp, err := ca.Init(state, ca.InitOptions{TrustDomain: domain, OverlayV4: o, Listen: listen, Now: time.Now(), EmailDomains: emailDomains, Store: storeURL})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Created certmesh CA for %s in %s\nRoot fingerprint (SHA-256): %s\n", domain, state, fp)
			vkey, err := os.ReadFile(filepath.Join(state, ca.LogPubFile))
			if err != nil {
				return fmt.Errorf("reading the transparency log's key: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Transparency log key (publish it where auditors can compare it: docs/auditors.md): %s\n", strings.TrimSpace(string(vkey)))
			fmt.Fprintf(cmd.OutOrStdout(), "Published the starter access policy (version 1): EVERY ENROLLED DEVICE MAY REACH EVERY OTHER.\n"+
				"Tighten it: certmesh-server policy show --state %s > policy.hujson, edit, certmesh policy test, certmesh-server policy publish.\n", state)
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state", defaultState, "state directory to create (must not exist or be empty)")
	cmd.Flags().StringVar(&td, "trust-domain", "", "trust domain, e.g. corp.example")
	cmd.Flags().StringVar(&overlay, "overlay", ca.DefaultOverlayV4, "IPv4 overlay range")
	cmd.Flags().StringVar(&listen, "listen", ca.DefaultListen, "default listen address for `run`")
	cmd.Flags().StringVar(&storeURL, "store", "", "keep the CA's records in this empty PostgreSQL database (postgres://user@host/db?sslmode=verify-full; the password from PGPASSWORD or ~/.pgpass, or in the URL) instead of the embedded certmesh.db; written to config.json as store")
	cmd.Flags().StringSliceVar(&emailDomains, "email-domain", nil, "constrain user certificates to these email domains in the intermediate itself (repeatable)")
	_ = cmd.MarkFlagRequired("trust-domain")
	return cmd
}
