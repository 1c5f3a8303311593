package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/audit"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/translog"
	"github.com/spf13/cobra"
)

// certCmd inspects certificates the way an auditor reads them.
func certCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Inspect certmesh certificates"}
	var rootFile, state, logURL, crlFile string
	inspect := &cobra.Command{
		Use:   "inspect [FILE]",
		Short: "Print a certificate or a whole bundle (PEM): chain, certmesh extensions, SPIFFE ID, fingerprints, verdict",
		Long: "Prints each certificate of FILE (or, with --state, this agent's own bundle) with every certmesh\n" +
			"extension decoded, and verifies the bundle against the root (--root, or the agent's pinned root)\n" +
			"and, with --crl, against a CRL the CA published (DER or PEM, e.g. fetched from its CRL URL).",
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
			out := cmd.OutOrStdout()
			for i, c := range cs {
				printCert(out, i, c.Raw)
				if logURL != "" && !c.IsCA {
					printLogEntry(cmd, out, logURL, rootFile, c)
				}
			}
			if rootFile == "" {
				if crlFile != "" {
					return fmt.Errorf("--crl needs --root (or --state) to verify the CRL's signature")
				}
				return nil
			}
			return printVerdict(out, cs, rootFile, crlFile)
		},
	}
	inspect.Flags().StringVar(&rootFile, "root", "", "root certificate (PEM) to verify the bundle against")
	inspect.Flags().StringVar(&logURL, "log", "", "the CA's URL: find each certificate's entry in its transparency log (https verified against --root)")
	inspect.Flags().StringVar(&state, "state", "", "inspect this agent's own bundle (and verify it against its pinned root)")
	inspect.Flags().StringVar(&crlFile, "crl", "", "a CRL file (DER or PEM) of the CA: the verdict says whether it revokes the bundle")
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

func printCert(w io.Writer, i int, der []byte) {
	b, err := certs.ParseBundle(certs.WireBundle{Machine: der})
	if err != nil {
		fmt.Fprintf(w, "[%d] unparseable: %v\n", i, err)
		return
	}
	c := b.Machine
	sum := sha256.Sum256(der)
	spki := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	kind := "leaf"
	if c.IsCA {
		kind = "CA"
	}
	fmt.Fprintf(w, "[%d] %s  %s\n", i, kind, c.Subject)
	fmt.Fprintf(w, "    issuer        %s\n", c.Issuer)
	fmt.Fprintf(w, "    serial        %s\n", c.SerialNumber.Text(16))
	fmt.Fprintf(w, "    valid         %s .. %s\n", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "    sha256        %s\n", hex.EncodeToString(sum[:]))
	fmt.Fprintf(w, "    key sha256    %s\n", hex.EncodeToString(spki[:]))
	if h, err := translog.CertificateLeafHash(der); err == nil && !c.IsCA {
		fmt.Fprintf(w, "    log leaf      %s (find it with certmesh audit list --json)\n", h)
	}
	for _, u := range c.URIs {
		fmt.Fprintf(w, "    SPIFFE ID     %s\n", u)
	}
	if len(c.DNSNames) > 0 {
		fmt.Fprintf(w, "    DNS           %s\n", strings.Join(c.DNSNames, ", "))
	}
	if len(c.EmailAddresses) > 0 {
		fmt.Fprintf(w, "    email         %s\n", strings.Join(c.EmailAddresses, ", "))
	}
	for _, ip := range c.IPAddresses {
		fmt.Fprintf(w, "    overlay IP    %s\n", ip)
	}
	for _, e := range c.Extensions {
		name, val := certs.DescribeExtension(e)
		if name != "" {
			fmt.Fprintf(w, "    %-13s %s\n", name, val)
		}
	}
}

func printVerdict(w io.Writer, cs []*x509.Certificate, rootFile, crlFile string) error {
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
	fmt.Fprintf(w, "root sha256   %s\n", certs.FingerprintOf(rs[0]))
	now := time.Now()
	var crl *certs.CRL
	if crlFile != "" {
		if crl, err = readCRL(crlFile, roots, b.Intermediates, now); err != nil {
			return err
		}
		stale := ""
		if crl.Stale(now, 0) {
			stale = " (past it: a newer CRL may revoke more)"
		}
		fmt.Fprintf(w, "CRL           number %s, %d entries, next update %s%s\n", crl.Number, crl.Len(), crl.NextUpdate.UTC().Format(time.RFC3339), stale)
	}
	id, err := certs.Verify(b, roots, crl, now)
	if err != nil {
		fmt.Fprintf(w, "verdict       REFUSED (%s): %v\n", certs.ReasonOf(err), err)
		return nil
	}
	fmt.Fprintf(w, "verdict       verified: %s, device %s, level %s, WireGuard %s\n", id.DisplayName(), id.DeviceID, id.Attestation, id.WireGuardKey)
	if id.UserRejected != nil {
		fmt.Fprintf(w, "user          not accepted: %v\n", id.UserRejected)
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

// printLogEntry looks the certificate up in the CA's transparency log.
func printLogEntry(cmd *cobra.Command, w io.Writer, logURL, rootFile string, c *x509.Certificate) {
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
		fmt.Fprintf(w, "    log entry     %v\n", err)
		return
	}
	idx, ok, err := translog.FindCertificate(cmd.Context(), cl, c.Raw)
	switch {
	case err != nil:
		fmt.Fprintf(w, "    log entry     lookup failed: %v\n", err)
	case !ok:
		fmt.Fprintf(w, "    log entry     NOT IN THE LOG\n")
	default:
		fmt.Fprintf(w, "    log entry     index %d\n", idx)
	}
}
