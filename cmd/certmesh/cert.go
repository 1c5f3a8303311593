package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/audit"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/cli"
	"github.com/certmesh/certmesh/translog"
	"github.com/spf13/cobra"
)

// certCmd inspects certificates the way an auditor reads them.
func certCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Inspect certmesh certificates"}
	var rootFile, state, logURL, crlFile string
	var asJSON bool
	inspect := &cobra.Command{
		Use:   "inspect [FILE]",
		Short: "Print a certificate or a whole bundle (PEM): chain, certmesh extensions, SPIFFE ID, fingerprints, verdict",
		Long: "Prints each certificate of FILE (or, with --state, this agent's own bundle) with every certmesh\n" +
			"extension decoded, and verifies the bundle against the root (--root, or the agent's pinned root)\n" +
			"and, with --crl, against a CRL the CA published (DER or PEM, e.g. fetched from its CRL URL).\n" +
			"Exits 1 on any refusal: the bundle or its user certificate refused, a certificate that cannot be\n" +
			"parsed, or (with --log) one the transparency log does not hold.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			switch {
			case len(args) == 1:
				data, err = os.ReadFile(args[0])
			case state != "":
				data, err = ownBundlePEM(state)
				if rootFile == "" {
					rootFile = filepath.Join(state, "root.crt")
				}
			default:
				return fmt.Errorf("give a PEM file or --state")
			}
			if err != nil {
				return err
			}
			cs, err := certs.ParsePEM(data)
			if err != nil {
				return err
			}
			if rootFile == "" && crlFile != "" {
				return cli.Usagef("--crl needs --root (or --state) to verify the CRL's signature")
			}
			var r inspectReport
			for i, c := range cs {
				ic := inspectCert(i, c.Raw)
				if logURL != "" && !c.IsCA && ic.Error == "" {
					ic.LogEntry, ic.notInLog = findLogEntry(cmd, logURL, rootFile, c)
				}
				r.Certificates = append(r.Certificates, ic)
			}
			if rootFile != "" {
				if err := r.verify(cs, rootFile, crlFile); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := cli.WriteJSON(out, r); err != nil {
					return err
				}
			} else {
				r.printText(out)
			}
			if why := r.refusal(); why != "" {
				return cli.Refused(errors.New(why))
			}
			return nil
		},
	}
	inspect.Flags().StringVar(&rootFile, "root", "", "root certificate (PEM) to verify the bundle against")
	inspect.Flags().StringVar(&logURL, "log", "", "the CA's URL: find each certificate's entry in its transparency log (https verified against --root)")
	inspect.Flags().StringVar(&state, "state", "", "inspect this agent's own bundle (and verify it against its pinned root)")
	inspect.Flags().StringVar(&crlFile, "crl", "", "a CRL file (DER or PEM) of the CA: the verdict says whether it revokes the bundle")
	inspect.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON (certificates, name constraints, key usages, certmesh extensions by name, verdict)")
	cmd.AddCommand(inspect)
	return cmd
}

// ownBundlePEM reads the agent's certificates from its state directory.
func ownBundlePEM(state string) ([]byte, error) {
	b, err := agent.ReadBundle(state)
	if err != nil {
		return nil, err
	}
	all := append([]*x509.Certificate{b.Machine}, b.Intermediates...)
	if b.User != nil {
		all = append(all, b.User)
	}
	return certs.EncodePEM(all...), nil
}

// verify verifies the bundle cs against the root in rootFile and, if
// given, the CRL in crlFile, and records the verdict.
func (r *inspectReport) verify(cs []*x509.Certificate, rootFile, crlFile string) error {
	data, err := os.ReadFile(rootFile)
	if err != nil {
		return err
	}
	rs, err := certs.ParsePEM(data)
	if err != nil || len(rs) == 0 {
		return fmt.Errorf("%s holds no root certificate", rootFile)
	}
	var b certs.Bundle
	for _, c := range cs {
		switch {
		case c.IsCA:
			b.Intermediates = append(b.Intermediates, c)
		case b.Machine == nil:
			b.Machine = c
		default:
			b.User = c
		}
	}
	if b.Machine == nil {
		return fmt.Errorf("no machine certificate in the bundle")
	}
	td, err := certs.TrustDomainOf(b.Machine)
	if err != nil {
		return err
	}
	roots, err := certs.NewRoots(td, rs[0])
	if err != nil {
		return err
	}
	r.RootSHA256 = string(certs.FingerprintOf(rs[0]))
	now := time.Now()
	var crl *certs.CRL
	if crlFile != "" {
		if crl, err = readCRL(crlFile, roots, b.Intermediates, now); err != nil {
			return err
		}
		r.CRL = &inspectedCRL{Number: crl.Number.String(), Entries: crl.Len(), NextUpdate: crl.NextUpdate.UTC(), Stale: crl.Stale(now, 0)}
	}
	id, err := certs.Verify(b, roots, crl, now)
	if err != nil {
		r.Verdict = &inspectVerdict{Reason: string(certs.ReasonOf(err)), Error: err.Error()}
		return nil
	}
	r.Verdict = &inspectVerdict{Verified: true, Name: id.DisplayName(), DeviceID: string(id.DeviceID),
		Attestation: string(id.Attestation), WireGuardKey: id.WireGuardKey.String()}
	if id.UserRejected != nil {
		r.Verdict.UserRefused = id.UserRejected.Error()
	}
	return nil
}

// readCRL reads a CRL file (DER, or PEM "X509 CRL") and verifies it
// against roots through the bundle's intermediates. A stale CRL is still
// used: it lists at least what was revoked when it was issued.
func readCRL(path string, roots *certs.Roots, inters []*x509.Certificate, now time.Time) (*certs.CRL, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(data); blk != nil {
		if blk.Type != "X509 CRL" {
			return nil, fmt.Errorf("%s: PEM block %q, want \"X509 CRL\"", path, blk.Type)
		}
		data = blk.Bytes
	}
	crl, err := certs.VerifyCRL(data, roots, inters, now, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return crl, nil
}

// findLogEntry looks the certificate up in the CA's transparency log:
// "index N", "NOT IN THE LOG" (notInLog) or why the lookup failed.
func findLogEntry(cmd *cobra.Command, logURL, rootFile string, c *x509.Certificate) (entry string, notInLog bool) {
	var roots *certs.Roots
	if rootFile != "" {
		if data, err := os.ReadFile(rootFile); err == nil {
			if rs, err := certs.ParsePEM(data); err == nil && len(rs) > 0 {
				if td, err := certs.TrustDomainOf(c); err == nil {
					roots, _ = certs.NewRoots(td, rs[0])
				}
			}
		}
	}
	hc := http.DefaultClient
	if roots != nil {
		hc = audit.HTTPClient(roots, 30*time.Second)
	}
	cl, err := translog.NewClient(logURL, hc)
	if err != nil {
		return err.Error(), false
	}
	idx, ok, err := translog.FindCertificate(cmd.Context(), cl, c.Raw)
	switch {
	case err != nil:
		return "lookup failed: " + err.Error(), false
	case !ok:
		return "NOT IN THE LOG", true
	default:
		return fmt.Sprintf("index %d", idx), false
	}
}
