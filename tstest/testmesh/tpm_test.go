//go:build tpmsimulator

package testmesh_test

// TPM enrollment through the real CA with the Microsoft reference TPM
// simulator (build tag tpmsimulator, cgo): the simulator has no EK
// certificate, so a test manufacturer CA issues one for its EK.

import (
	"context"
	"crypto"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/tpmkey"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/tpmtest"
)

// tpmSetup makes a simulator TPM, a manufacturer that certified its EK
// (the EK certificate written to a file), and the agent's TPM config.
func tpmSetup(t *testing.T, mfr *tpmtest.Manufacturer) (*tpmtest.TPM, *agent.TPMConfig, *tpmkey.EK) {
	t.Helper()
	sim := tpmtest.New(t)
	ek, err := sim.EK(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cfg := &agent.TPMConfig{Open: func(context.Context, string) (*tpmkey.TPM, error) { return sim.TPM, nil }}
	if mfr != nil {
		cert := mfr.IssueEKCert(t, ek.Public)
		cfg.EKCertFile = filepath.Join(t.TempDir(), "ek.pem")
		if err := os.WriteFile(cfg.EKCertFile, certs.EncodePEM(cert), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sim, cfg, ek
}

// mfrMesh is a mesh whose CA trusts mfr's EK certificates.
func mfrMesh(t *testing.T, mfr *tpmtest.Manufacturer, edit func(*ca.Config)) *meshlab.InProc {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tpm-roots.pem")
	if err := os.WriteFile(file, certs.EncodePEM(mfr.Root, mfr.Intermediate), 0o644); err != nil {
		t.Fatal(err)
	}
	return meshlab.NewInProc(t, meshlab.InProcOptions{Config: func(cfg *ca.Config, _ string) {
		cfg.TPM = &ca.TPMConfig{ManufacturerRoots: file}
		if edit != nil {
			edit(cfg)
		}
	}})
}

func TestTPMEnrollment(t *testing.T) {
	mfr := tpmtest.NewManufacturer(t)
	m := mfrMesh(t, mfr, nil)
	sim, tcfg, ek := tpmSetup(t, mfr)
	n := m.AddNode(t, "tpm-laptop", meshlab.NodeOptions{TPM: tcfg})
	st := n.Status(t)
	if st.Self.Attestation != certs.AttestationTPM {
		t.Fatalf("attestation level %q, want tpm", st.Self.Attestation)
	}
	// The certificate's key is the TPM's and it names the EK.
	b, _ := n.Agent.Bundle()
	signer, err := sim.DeviceSigner(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !b.Machine.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(signer.Public()) {
		t.Fatal("the machine certificate's key is not the TPM's device key")
	}
	id, err := certs.Verify(b, m.Roots, nil, b.Machine.NotBefore.Add(1))
	if err != nil || string(id.EK) != ek.Fingerprint.String() {
		t.Fatalf("identity EK %q (%v), want %s", id.EK, err, ek.Fingerprint)
	}
	// Renewal signs with the TPM key and keeps the level.
	if err := n.Agent.RenewNow(t.Context()); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	b2, _ := n.Agent.Bundle()
	if b2.Machine.SerialNumber.Cmp(b.Machine.SerialNumber) == 0 || !b2.Machine.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(signer.Public()) {
		t.Fatal("renewal did not issue a new certificate for the TPM key")
	}
	if st := n.Status(t); st.Self.Attestation != certs.AttestationTPM {
		t.Fatalf("after renewal: level %q", st.Self.Attestation)
	}
	devs, _ := m.Server.CA.Devices(t.Context())
	if len(devs) != 1 || devs[0].EKFP != ek.Fingerprint.String() || devs[0].Attestation != certs.AttestationTPM {
		t.Fatalf("device records %+v", devs)
	}
}

func TestTPMAllowListWithoutToken(t *testing.T) {
	m := meshlab.NewInProc(t, meshlab.InProcOptions{})
	_, tcfg, ek := tpmSetup(t, nil) // no EK certificate at all
	if err := m.Server.CA.SetEKs([]string{ek.Fingerprint.String()}, true); err != nil {
		t.Fatal(err)
	}
	n := m.AddNode(t, "mdm-laptop", meshlab.NodeOptions{TPM: tcfg, NoToken: true})
	if st := n.Status(t); st.Self.Attestation != certs.AttestationTPM {
		t.Fatalf("level %q", st.Self.Attestation)
	}
}

func TestTPMRefusals(t *testing.T) {
	t.Run("unknown manufacturer", func(t *testing.T) {
		m := mfrMesh(t, tpmtest.NewManufacturer(t), nil)
		_, tcfg, _ := tpmSetup(t, tpmtest.NewNamedManufacturer(t, "Rogue TPM Vendor"))
		_, err := m.StartNode(t, "x", meshlab.NodeOptions{TPM: tcfg})
		wantRefused(t, m, err, "bad-attestation")
	})
	t.Run("EK not allowed and no certificate", func(t *testing.T) {
		m := meshlab.NewInProc(t, meshlab.InProcOptions{})
		_, tcfg, _ := tpmSetup(t, nil)
		_, err := m.StartNode(t, "x", meshlab.NodeOptions{TPM: tcfg})
		wantRefused(t, m, err, "bad-attestation")
	})
	t.Run("genuine TPM without a token", func(t *testing.T) {
		mfr := tpmtest.NewManufacturer(t)
		m := mfrMesh(t, mfr, nil)
		_, tcfg, _ := tpmSetup(t, mfr)
		_, err := m.StartNode(t, "x", meshlab.NodeOptions{TPM: tcfg, NoToken: true})
		wantRefused(t, m, err, "token")
	})
	t.Run("token enrollment when TPM is required", func(t *testing.T) {
		m := mfrMesh(t, tpmtest.NewManufacturer(t), func(c *ca.Config) { c.TPM.RequireTPM = true })
		_, err := m.StartNode(t, "x", meshlab.NodeOptions{})
		wantRefused(t, m, err, "only enrolls devices with a TPM")
	})
}

// wantRefused checks that an enrollment failed saying why, with nothing
// recorded at the CA.
func wantRefused(t *testing.T, m *meshlab.InProc, err error, says string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), says) {
		t.Fatalf("enrollment: %v, want a refusal that says %q", err, says)
	}
	t.Logf("refused: %v", err)
	if devs, _ := m.Server.CA.Devices(t.Context()); len(devs) != 0 {
		t.Fatalf("a refused enrollment recorded devices: %+v", devs)
	}
}

// One EK enrolls one device: a second enrollment from the same TPM
// replaces and revokes the first.
func TestTPMOneEKOneDevice(t *testing.T) {
	mfr := tpmtest.NewManufacturer(t)
	m := mfrMesh(t, mfr, nil)
	sim, tcfg, _ := tpmSetup(t, mfr)
	first := m.AddNode(t, "first", meshlab.NodeOptions{TPM: tcfg})
	firstID := first.Status(t).Self.DeviceID
	first.Stop()
	other := sim.Other(t) // same TPM, fresh state dir (a reinstalled laptop)
	tcfg2 := *tcfg
	tcfg2.Open = func(context.Context, string) (*tpmkey.TPM, error) { return other.TPM, nil }
	second := m.AddNode(t, "second", meshlab.NodeOptions{TPM: &tcfg2})
	if second.Status(t).Self.DeviceID == firstID {
		t.Fatal("the same device ID was reused")
	}
	devs, _ := m.Server.CA.Devices(t.Context())
	states := map[certs.DeviceID]store.DeviceState{}
	for _, d := range devs {
		states[d.ID] = d.State
	}
	if states[firstID] != store.DeviceRevoked || len(devs) != 2 {
		t.Fatalf("device states %v, want the first revoked", states)
	}
	crl, err := x509.ParseRevocationList(m.Server.CA.CRL())
	if err != nil || len(crl.RevokedCertificateEntries) == 0 {
		t.Fatalf("CRL after replacement: %v entries, %v", len(crl.RevokedCertificateEntries), err)
	}
}
