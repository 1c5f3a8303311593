package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/statedir"
	"github.com/spf13/cobra"
)

func backupCmd() *cobra.Command {
	var state string
	cmd := &cobra.Command{
		Use:   "backup --state DIR DEST",
		Short: "Copy the CA's state directory consistently into the new directory DEST, while the server runs or not",
		Long: "Copies every file of the state directory (keys, configuration, policy, the three databases) into DEST, a new\n" +
			"directory that appears whole or not at all, with a manifest (backup.json) of each file's SHA-256. While the server\n" +
			"runs, it takes the copy itself (over admin.sock): the databases by their own snapshot, no issuance meanwhile.\n" +
			"DEST holds the online keys: keep it encrypted. Restore it with certmesh-server restore.",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			dest, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			m, err := ca.BackupStopped(c.Context(), state, dest, time.Now())
			if errors.Is(err, statedir.ErrLocked) { // the server runs: it copies
				m, err = ca.NewAdminClient(state).Backup(c.Context(), dest)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "backed up %s to %s: %d files, transparency log at size %d, taken %s\n",
				state, dest, len(m.Files), m.LogSize, m.TakenAt.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state", defaultState, "state directory of the server")
	return cmd
}

func restoreCmd() *cobra.Command {
	var state string
	var force bool
	cmd := &cobra.Command{
		Use:   "restore SRC --state DIR",
		Short: "Bring a backup back into a state directory, marked restored: the CA issues nothing until it has caught up",
		Long: "Checks every file of the backup SRC against its manifest, then builds the state directory beside DIR and renames\n" +
			"it into place (nothing half-written). DIR must be missing or empty unless --force, which keeps the old one as\n" +
			"DIR.replaced-TIME. The restored CA starts \"restored: catching up\": it issues, renews, revokes and publishes\n" +
			"nothing (no certificate, CRL, log checkpoint or policy version) until certmesh-server catch-up, so that it\n" +
			"cannot rewrite what agents and auditors have seen since the backup (docs/backup-restore.md).",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			m, replaced, err := ca.Restore(args[0], state, ca.RestoreOptions{Force: force, Now: time.Now()})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "restored %s (taken %s, transparency log at size %d) into %s\n",
				args[0], m.TakenAt.UTC().Format(time.RFC3339), m.LogSize, state)
			if replaced != "" {
				fmt.Fprintf(c.OutOrStdout(), "the state directory it replaced is now %s\n", replaced)
			}
			fmt.Fprintln(c.OutOrStdout(), "the CA is restored: catching up, and issues nothing until certmesh-server catch-up")
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state", defaultState, "state directory to restore into (missing or empty)")
	cmd.Flags().BoolVar(&force, "force", false, "replace a state directory that holds something (the server must be stopped; the old one is kept beside it)")
	return cmd
}

func catchUpCmd() *cobra.Command {
	var state, logFrom string
	var crlFiles []string
	cmd := &cobra.Command{
		Use:   "catch-up --state DIR --log-from URL|FILE --crl-from FILE",
		Short: "Teach a restored CA what it issued after the backup, from a copy of its log and the newest CRL agents hold",
		Long: "With the server stopped, re-appends to the restored log the entries a copy of it holds past the backup (--log-from:\n" +
			"a URL serving the log's /v1/log/ endpoints, or a translog.db), byte for byte, and keeps them only if the tree is\n" +
			"then the one the copy's checkpoint (signed by log.key) shows; records the certificates and revocations they hold;\n" +
			"raises the address counter past every overlay address they certify and the CRL number past the newest CRL given\n" +
			"(--crl-from, e.g. an agent's STATE/crl.der, repeatable). Then the CA is no longer \"restored: catching up\".",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var crls [][]byte
			for _, f := range crlFiles {
				der, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("--crl-from: %w", err)
				}
				crls = append(crls, der)
			}
			res, err := ca.CatchUp(c.Context(), state, ca.CatchUpOptions{LogFrom: logFrom, CRLs: crls})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "caught up: %d log entries re-appended (log size %d), %d certificates and %d revocations learned, "+
				"addresses past index %d, CRL numbers past %d\n", res.Appended, res.LogSize, res.Certificates, res.Revocations, res.AddressIndex, res.CRLNumber)
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state", defaultState, "the restored state directory (server stopped)")
	cmd.Flags().StringVar(&logFrom, "log-from", "", "a copy of the transparency log: http(s)://host[:port] serving /v1/log/, or a translog.db file")
	cmd.Flags().StringSliceVar(&crlFiles, "crl-from", nil, "the newest CRL agents hold (DER, an agent's STATE/crl.der; repeatable)")
	_ = cmd.MarkFlagRequired("log-from")
	_ = cmd.MarkFlagRequired("crl-from")
	return cmd
}
