package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/cli"
	"github.com/certmesh/certmesh/tstest/testca"
)

// runInspect runs `certmesh cert inspect ARGS...`.
func runInspect(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := certCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"inspect"}, args...))
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func writePEM(t *testing.T, dir, name string, blocks ...[]byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, bytes.Join(blocks, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCertInspect reads a machine+user bundle the way an auditor does:
// every certmesh extension decoded, the SPIFFE IDs, fingerprints, the
// verdict against the root, and against a CRL that revokes it.
func TestCertInspect(t *testing.T) {
	f := newAuditFixture(t) // a CA, its root file and a log holding f.logged
	ca := f.ca
	prof := ca.NewProfile(t, "laptop")
	prof.Tags = []certs.Tag{"db"}
	machine, _ := ca.IssueMachine(t, prof)
	full := ca.IssueUser(t, machine, testca.WithEmail("alice@corp.example"), testca.WithGroups("eng", "sre"))
	bundle := writePEM(t, f.dir, "bundle.pem", certs.EncodePEM(full.Machine), certs.EncodePEM(full.User), certs.EncodePEM(full.Intermediates[0]))

	out, err := runInspect(t, bundle, "--root", f.rootFile)
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	sum := sha256.Sum256(full.Machine.Raw)
	for _, want := range []string{
		"SPIFFE ID     spiffe://corp.example/device/" + string(prof.DeviceID),
		"SPIFFE ID     spiffe://corp.example/user/",
		"wireguard     " + prof.WireGuardKey.String(),
		"attestation   token",
		"tags          tag:db",
		"groups        eng, sre",
		"bound to      device " + string(prof.DeviceID),
		"email         alice@corp.example",
		"overlay IP    " + prof.Addresses[0].String(),
		"sha256        " + hex.EncodeToString(sum[:]),
		"root sha256   " + string(certs.FingerprintOf(ca.Root().Cert)),
		"verdict       verified: alice@corp.example on laptop",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "user          not accepted") {
		t.Errorf("the user certificate was not accepted:\n%s", out)
	}

	// Another CA's root: refused as untrusted.
	other := testca.New(t, "corp.example")
	otherRoot := writePEM(t, f.dir, "other-root.pem", certs.EncodePEM(other.Root().Cert))
	out, err = runInspect(t, bundle, "--root", otherRoot)
	if cli.ExitCode(err) != cli.ExitRefused || !strings.Contains(out, "verdict       REFUSED ("+string(certs.ReasonUntrusted)+")") {
		t.Errorf("against another root: %v (exit %d, want 1)\n%s", err, cli.ExitCode(err), out)
	}

	// A CRL revoking the user certificate: the machine stands, the user
	// is refused; one revoking the machine: the bundle is refused.
	now := time.Now()
	crlPEM := func(name string, revoked ...*certs.Bundle) string {
		var entries []certs.RevokedCert
		for _, b := range revoked {
			c := b.Machine
			if b.User != nil {
				c = b.User
			}
			entries = append(entries, testca.Revoked(c, certs.RevokeKeyCompromise))
		}
		der := ca.IssueCRL(t, 5, now.Add(-time.Minute), now.Add(5*time.Minute), entries...)
		return writePEM(t, f.dir, name, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	}
	out, err = runInspect(t, bundle, "--root", f.rootFile, "--crl", crlPEM("user.crl", &full))
	if cli.ExitCode(err) != cli.ExitRefused || !strings.Contains(out, "CRL           number 5, 1 entries") ||
		!strings.Contains(out, "verdict       verified: laptop") || !strings.Contains(out, "("+string(certs.ReasonUserRevoked)+")") {
		t.Errorf("with a CRL revoking the user: %v (exit %d, want 1)\n%s", err, cli.ExitCode(err), out)
	}
	out, err = runInspect(t, bundle, "--root", f.rootFile, "--crl", crlPEM("machine.crl", &machine))
	if cli.ExitCode(err) != cli.ExitRefused || !strings.Contains(out, "verdict       REFUSED ("+string(certs.ReasonRevoked)+")") {
		t.Errorf("with a CRL revoking the machine: %v (exit %d, want 1)\n%s", err, cli.ExitCode(err), out)
	}
	// A CRL of another CA is refused, not ignored.
	otherCRL := writePEM(t, f.dir, "other.crl", other.IssueCRL(t, 9, now.Add(-time.Minute), now.Add(time.Minute)))
	if out, err = runInspect(t, bundle, "--root", f.rootFile, "--crl", otherCRL); err == nil {
		t.Errorf("another CA's CRL was accepted:\n%s", out)
	}
	if out, err = runInspect(t, bundle, "--crl", otherCRL); err == nil || !strings.Contains(err.Error(), "--crl needs --root") {
		t.Errorf("--crl without a root: %v\n%s", err, out)
	}

	// The log entry: the fixture's logged certificate is found, this
	// bundle's machine certificate is not.
	logged := writePEM(t, f.dir, "logged.pem", certs.EncodePEM(f.logged.Machine), certs.EncodePEM(f.logged.Intermediates[0]))
	out, err = runInspect(t, logged, "--root", f.rootFile, "--log", f.tlsURL)
	if err != nil || !strings.Contains(out, "log entry     index 0") {
		t.Errorf("a logged certificate: %v\n%s", err, out)
	}
	out, err = runInspect(t, bundle, "--root", f.rootFile, "--log", f.tlsURL)
	if cli.ExitCode(err) != cli.ExitRefused || !strings.Contains(out, "log entry     NOT IN THE LOG") {
		t.Errorf("an unlogged certificate: %v (exit %d, want 1)\n%s", err, cli.ExitCode(err), out)
	}
}

// TestCertInspectJSON: --json prints the same report as a document an
// auditor's script reads: the intermediate's name constraints and key
// usages, the machine certificate's certmesh extensions by name, the
// verdict; and a refusal exits 1 with the report still printed.
func TestCertInspectJSON(t *testing.T) {
	f := newAuditFixture(t)
	prof := f.ca.NewProfile(t, "laptop")
	prof.Tags = []certs.Tag{"db"}
	machine, _ := f.ca.IssueMachine(t, prof)
	bundle := writePEM(t, f.dir, "bundle.pem", certs.EncodePEM(machine.Machine), certs.EncodePEM(machine.Intermediates[0]))

	decode := func(out string) inspectReport {
		t.Helper()
		var r inspectReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("--json output is not JSON: %v\n%s", err, out)
		}
		return r
	}
	out, err := runInspect(t, bundle, "--root", f.rootFile, "--json")
	if err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	r := decode(out)
	if len(r.Certificates) != 2 || r.Verdict == nil || !r.Verdict.Verified || r.Verdict.DeviceID != string(prof.DeviceID) {
		t.Fatalf("report %+v, want two certificates and a verified verdict for %s", r, prof.DeviceID)
	}
	leaf, inter := r.Certificates[0], r.Certificates[1]
	if leaf.Extensions["wireguard"] != prof.WireGuardKey.String() || leaf.Extensions["tags"] != "tag:db" || leaf.Extensions["attestation"] != "token" {
		t.Errorf("certmesh extensions %v, want wireguard %s, tags tag:db, attestation token", leaf.Extensions, prof.WireGuardKey)
	}
	if !slices.Contains(leaf.KeyUsage, "digitalSignature") || !slices.Contains(leaf.ExtKeyUsage, "clientAuth") {
		t.Errorf("machine key usage %v / %v", leaf.KeyUsage, leaf.ExtKeyUsage)
	}
	nc := inter.NameConstraints
	if inter.Kind != "CA" || nc == nil || !nc.Critical || !slices.Contains(nc.PermittedDNS, "corp.example") || len(nc.PermittedIP) == 0 {
		t.Errorf("intermediate %s name constraints %+v, want critical, DNS corp.example and the overlay", inter.Kind, nc)
	}
	if !slices.Contains(inter.KeyUsage, "keyCertSign") || !slices.Contains(inter.KeyUsage, "cRLSign") {
		t.Errorf("intermediate key usage %v", inter.KeyUsage)
	}

	other := testca.New(t, "corp.example")
	otherRoot := writePEM(t, f.dir, "other-root.pem", certs.EncodePEM(other.Root().Cert))
	out, err = runInspect(t, bundle, "--root", otherRoot, "--json")
	if cli.ExitCode(err) != cli.ExitRefused {
		t.Fatalf("against another root: %v (exit %d), want exit 1", err, cli.ExitCode(err))
	}
	if r := decode(out); r.Verdict == nil || r.Verdict.Verified || r.Verdict.Reason != string(certs.ReasonUntrusted) {
		t.Errorf("against another root: verdict %+v, want refused %s", r.Verdict, certs.ReasonUntrusted)
	}
}
