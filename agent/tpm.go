package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/certmesh/certmesh/agent/tpmkey"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// tpmStateDir is where the TPM's AK and device key blobs live.
const tpmStateDir = "tpm"

// TPMConfig makes the agent keep its device key in a TPM 2.0.
type TPMConfig struct {
	// Device is the TPM device (default /dev/tpmrm0).
	Device string
	// EKCertFile, if set, is the EK certificate to present (PEM or DER),
	// for a TPM that keeps none in its NV (an MDM can provide it).
	EKCertFile string
	// Open overrides how the TPM is opened (tests: the simulator).
	Open func(ctx context.Context, stateDir string) (*tpmkey.TPM, error)
}

// openTPM opens the configured TPM with its blobs in STATE/tpm.
func (a *Agent) openTPM(ctx context.Context) (*tpmkey.TPM, error) {
	dir := filepath.Join(a.cfg.StateDir, tpmStateDir)
	if a.cfg.TPM.Open != nil {
		return a.cfg.TPM.Open(ctx, dir)
	}
	return tpmkey.Open(ctx, tpmkey.Config{Device: a.cfg.TPM.Device, StateDir: dir})
}

// loadTPMSigner makes the TPM's device key the agent's device key (an
// agent enrolled before).
func (a *Agent) loadTPMSigner(ctx context.Context) error {
	t, err := a.openTPM(ctx)
	if err != nil {
		return fmt.Errorf("opening TPM: %w", err)
	}
	a.tpm = t
	s, err := t.DeviceSigner(ctx)
	if errors.Is(err, tpmkey.ErrNoDeviceKey) {
		return nil // enrollment creates it
	}
	if err != nil {
		return fmt.Errorf("loading the TPM device key: %w", err)
	}
	a.keys.device = s
	return nil
}

// enrollTPM runs a TPM enrollment: the CA checks the EK, the TPM activates
// the CA's credential (proving the AK is in that TPM), creates the device
// key certified by the AK over SHA-256(nonce ‖ WireGuard key), and the CSR
// is signed inside the TPM.
func (a *Agent) enrollTPM(ctx context.Context, host certs.Hostname) (wire.CertificateResponse, error) {
	var resp wire.CertificateResponse
	t := a.tpm
	ek, err := t.EK(ctx)
	if err != nil {
		return resp, fmt.Errorf("reading the TPM's endorsement key: %w", err)
	}
	ekPub, err := x509.MarshalPKIXPublicKey(ek.Public)
	if err != nil {
		return resp, fmt.Errorf("encoding EK: %w", err)
	}
	chReq := wire.TPMChallengeRequest{EKPublic: ekPub}
	if ek.Certificate != nil {
		chReq.EKCert = ek.Certificate.Raw
	}
	if f := a.cfg.TPM.EKCertFile; f != "" {
		if chReq.EKCert, err = readCertFile(f); err != nil {
			return resp, fmt.Errorf("EK certificate: %w", err)
		}
	}
	if info, err := t.Info(ctx); err == nil {
		chReq.Manufacturer = info.String()
	}
	if chReq.AKPublic, err = t.AKPublic(ctx); err != nil {
		return resp, fmt.Errorf("TPM attestation key: %w", err)
	}
	a.cfg.Logger.Info("enrolling with the TPM", "ek_sha256", ek.Fingerprint, "ek_certificate", chReq.EKCert != nil)
	var n wire.NonceResponse
	if err := a.caAPI.call(ctx, http.MethodPost, wire.PathNonce, struct{}{}, &n); err != nil {
		return resp, fmt.Errorf("getting enrollment nonce: %w", err)
	}
	var ch wire.TPMChallengeResponse
	if err := a.caAPI.call(ctx, http.MethodPost, wire.PathTPMChallenge, chReq, &ch); err != nil {
		return resp, fmt.Errorf("TPM challenge: %w", err)
	}
	secret, err := t.ActivateCredential(ctx, ch.Credential, ch.Secret)
	if err != nil {
		return resp, fmt.Errorf("activating the CA's credential in the TPM: %w", err)
	}
	wgPub := a.keys.wg.Public()
	dk, err := t.CreateDeviceKey(ctx, tpmkey.QualifyingData([]byte(n.Nonce), wgPub[:]))
	if err != nil {
		return resp, fmt.Errorf("creating the device key in the TPM: %w", err)
	}
	a.keys.device = dk.Signer
	csr, proof, err := proofRequest(a.keys, n.Nonce)
	if err != nil {
		return resp, err
	}
	req := wire.EnrollRequest{Token: a.cfg.Token, Hostname: string(host), CSR: csr, WireGuardKey: wgPub, Nonce: n.Nonce, Proof: proof,
		TPM: &wire.TPMEvidence{Session: ch.Session, ActivatedSecret: secret, KeyPublic: dk.Attestation.KeyPublic,
			CertifyInfo: dk.Attestation.CertifyInfo, Signature: dk.Attestation.Signature}, Asks: a.asks()}
	if err := a.caAPI.call(ctx, http.MethodPost, wire.PathEnroll, req, &resp); err != nil {
		return resp, fmt.Errorf("enrolling: %w", err)
	}
	return resp, nil
}

func readCertFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if cs, err := certs.ParsePEM(data); err == nil && len(cs) > 0 {
		return cs[0].Raw, nil
	}
	if _, err := x509.ParseCertificate(data); err != nil {
		return nil, fmt.Errorf("%s is neither PEM nor DER X.509: %w", path, err)
	}
	return data, nil
}
