//go:build tpmsimulator

package testmesh_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/tpmtest"
)

// A TPM device whose certificate expired renews after expiry with its key
// signing inside the TPM, and stays a TPM-attested device.
func TestTPMRenewalAfterExpiry(t *testing.T) {
	mfr := tpmtest.NewManufacturer(t)
	file := filepath.Join(t.TempDir(), "tpm-roots.pem")
	if err := os.WriteFile(file, certs.EncodePEM(mfr.Root, mfr.Intermediate), 0o644); err != nil {
		t.Fatal(err)
	}
	clk := &testclock.Clock{}
	m := meshlab.NewInProc(t, meshlab.InProcOptions{Clock: clk, Config: func(cfg *ca.Config, _ string) {
		cfg.TPM = &ca.TPMConfig{ManufacturerRoots: file}
	}})
	_, tcfg, _ := tpmSetup(t, mfr)
	n := m.AddNode(t, "tpm-laptop", meshlab.NodeOptions{TPM: tcfg, Clock: clk})
	before := n.Status(t).Self
	clk.Advance(before.CertNotAfter.Sub(clk.Now()) + time.Hour)
	meshlab.Eventually(t, 30*time.Second, "the TPM device to renew after expiry", func() error {
		st := n.Status(t).Self
		if !st.CertNotAfter.After(clk.Now()) {
			return fmt.Errorf("certificate still expired at %s", st.CertNotAfter)
		}
		if st.DeviceID != before.DeviceID || st.Attestation != certs.AttestationTPM {
			return fmt.Errorf("renewed as %s (%s), want device %s at level tpm", st.DeviceID, st.Attestation, before.DeviceID)
		}
		return nil
	})
}
