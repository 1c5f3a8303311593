package tpmkey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	steptpm "go.step.sm/crypto/tpm"
)

// ErrNoDeviceKey is returned when the state dir holds no device key yet.
var ErrNoDeviceKey = errors.New("tpmkey: no device key in the state dir (enroll first)")

// Attestation is the AK's certification of the device key, what the CA
// checks with ca/attest.VerifyKeyCertification.
type Attestation struct {
	// AKPublic is the AK's public area (TPMT_PUBLIC).
	AKPublic []byte `json:"ak_public"`
	// KeyPublic is the device key's public area (TPMT_PUBLIC).
	KeyPublic []byte `json:"key_public"`
	// CertifyInfo is the TPMS_ATTEST that TPM2_Certify produced.
	CertifyInfo []byte `json:"certify_info"`
	// Signature is the AK's TPMT_SIGNATURE over CertifyInfo.
	Signature []byte `json:"signature"`
}

// DeviceKey is a device key and its certification.
type DeviceKey struct {
	// Signer signs with the key inside the TPM. Its Public() is an
	// *ecdsa.PublicKey on P-256.
	Signer crypto.Signer
	// Attestation is the AK's certification over the qualifying data
	// given when the key was created.
	Attestation Attestation
	// Name is the key's name in the state dir.
	Name string
}

// QualifyingData is what enrollment has the TPM certify the device key
// over: SHA-256(nonce ‖ WireGuard public key), with the CA's nonce. The CA
// computes the same (ca/attest.QualifyingData) and compares it with the
// certification's extraData.
func QualifyingData(nonce, wgPublicKey []byte) []byte {
	h := sha256.New()
	h.Write(nonce)
	h.Write(wgPublicKey)
	return h.Sum(nil)
}

const maxQualifyingData = 64 // TPM2B_DATA holds at most sizeof(TPMT_HA)

func checkQualifyingData(qd []byte) error {
	if len(qd) == 0 || len(qd) > maxQualifyingData {
		return fmt.Errorf("tpmkey: qualifying data of %d bytes; want 1 to %d", len(qd), maxQualifyingData)
	}
	return nil
}

// CreateDeviceKey creates a new device key in the TPM — ECC P-256,
// fixedTPM, fixedParent, sensitiveDataOrigin, a signing key that is not
// restricted — and has the AK certify it (TPM2_Certify) with
// qualifyingData in extraData (for enrollment, SHA-256(nonce ‖ WireGuard
// public key)). The new key replaces any previous device key in the state
// dir; to keep the current key, use [TPM.CertifyDeviceKey].
func (t *TPM) CreateDeviceKey(ctx context.Context, qualifyingData []byte) (*DeviceKey, error) {
	if err := checkQualifyingData(qualifyingData); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.akLocked(ctx); err != nil {
		return nil, err
	}
	name := fmt.Sprintf("%s%020d", deviceKeyPrefix, time.Now().UnixNano())
	key, err := t.tpm.AttestKey(ctx, akName, name, steptpm.AttestKeyConfig{
		Algorithm:      "ECDSA",
		Size:           256,
		QualifyingData: qualifyingData,
	})
	if err != nil {
		return nil, fmt.Errorf("tpmkey: creating device key: %w", err)
	}
	params, err := key.CertificationParameters(ctx)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: device key certification: %w", err)
	}
	att, err := t.attestation(ctx, params.Public, params.CreateAttestation, params.CreateSignature)
	if err != nil {
		return nil, err
	}
	signer, err := key.Signer(ctx)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: device key signer: %w", err)
	}
	// Only now that the new key is stored and usable, drop older ones.
	// Best effort: the newest key is the current one whatever is left,
	// and a leftover is removed next time.
	for _, old := range t.deviceKeyNames() {
		if old != name {
			_ = t.tpm.DeleteKey(ctx, old)
		}
	}
	return &DeviceKey{Signer: signer, Attestation: att, Name: name}, nil
}

func (t *TPM) attestation(ctx context.Context, keyPublic, certifyInfo, sig []byte) (Attestation, error) {
	ak, err := t.akLocked(ctx)
	if err != nil {
		return Attestation{}, err
	}
	p, err := ak.AttestationParameters(ctx)
	if err != nil {
		return Attestation{}, fmt.Errorf("tpmkey: AK parameters: %w", err)
	}
	return Attestation{AKPublic: p.Public, KeyPublic: keyPublic, CertifyInfo: certifyInfo, Signature: sig}, nil
}

// deviceKeyNames lists the device keys in the state dir, oldest first.
func (t *TPM) deviceKeyNames() []string {
	var out []string
	for _, n := range t.store.ListKeyNames() {
		if strings.HasPrefix(n, deviceKeyPrefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func (t *TPM) currentDeviceKey(ctx context.Context) (*steptpm.Key, error) {
	names := t.deviceKeyNames()
	if len(names) == 0 {
		return nil, ErrNoDeviceKey
	}
	key, err := t.tpm.GetKey(ctx, names[len(names)-1])
	if errors.Is(err, steptpm.ErrNotFound) {
		return nil, ErrNoDeviceKey
	}
	if err != nil {
		return nil, fmt.Errorf("tpmkey: device key: %w", err)
	}
	return key, nil
}

// CertifyDeviceKey has the AK certify the current device key again over
// new qualifying data (a fresh TPM2_Certify), for a renewal or
// re-enrollment that keeps the key.
func (t *TPM) CertifyDeviceKey(ctx context.Context, qualifyingData []byte) (Attestation, error) {
	if err := checkQualifyingData(qualifyingData); err != nil {
		return Attestation{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	key, err := t.currentDeviceKey(ctx)
	if err != nil {
		return Attestation{}, err
	}
	params, err := key.Recertify(ctx, steptpm.RecertifyConfig{QualifyingData: qualifyingData})
	if err != nil {
		return Attestation{}, fmt.Errorf("tpmkey: certifying device key: %w", err)
	}
	return t.attestation(ctx, params.Public, params.CreateAttestation, params.CreateSignature)
}

// DeviceSigner returns a signer for the current device key, loading it
// from the state dir (after a restart, for instance). [ErrNoDeviceKey]
// when there is none.
func (t *TPM) DeviceSigner(ctx context.Context) (crypto.Signer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key, err := t.currentDeviceKey(ctx)
	if err != nil {
		return nil, err
	}
	s, err := key.Signer(ctx)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: loading device key %s: %w (if the TPM was cleared, Reset and enroll again)", key.Name(), err)
	}
	if pub, ok := s.Public().(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("tpmkey: device key %s is not ECC P-256", key.Name())
	}
	return s, nil
}
