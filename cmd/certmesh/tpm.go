package main

import (
	"encoding/pem"
	"fmt"
	"os"

	"github.com/certmesh/certmesh/agent/tpmkey"
	"github.com/spf13/cobra"
)

// tpmCmd prints what a security team needs to allow-list this machine's TPM.
func tpmCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tpm", Short: "Inspect this machine's TPM 2.0"}
	var device, certOut string
	ek := &cobra.Command{
		Use:   "ek",
		Short: "Print the TPM's endorsement key fingerprint (for certmesh-server eks add) and manufacturer",
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := os.MkdirTemp("", "certmesh-tpm")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			t, err := tpmkey.Open(cmd.Context(), tpmkey.Config{Device: device, StateDir: dir})
			if err != nil {
				return err
			}
			defer t.Close()
			e, err := t.EK(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "ek-sha256 %s\n", e.Fingerprint)
			fmt.Fprintf(out, "type      %s\n", e.Type())
			if info, err := t.Info(cmd.Context()); err == nil {
				fmt.Fprintf(out, "tpm       %s\n", info)
			}
			switch {
			case e.Certificate != nil:
				fmt.Fprintf(out, "ek-cert   issuer %q, serial %s\n", e.Certificate.Issuer, e.Certificate.SerialNumber)
				if certOut != "" {
					data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.Certificate.Raw})
					if err := os.WriteFile(certOut, data, 0o644); err != nil {
						return err
					}
				}
			case e.CertificateURL != "":
				fmt.Fprintf(out, "ek-cert   not in the TPM; the manufacturer publishes it at %s\n", e.CertificateURL)
			default:
				fmt.Fprintln(out, "ek-cert   none (allow-list the fingerprint instead)")
			}
			return nil
		},
	}
	ek.Flags().StringVar(&device, "tpm-device", tpmkey.DefaultDevice, "TPM device")
	ek.Flags().StringVar(&certOut, "cert-out", "", "write the EK certificate (PEM) here")
	cmd.AddCommand(ek)
	return cmd
}
