package tpmkey

import (
	"context"
	"errors"
	"fmt"

	steptpm "go.step.sm/crypto/tpm"
)

// ak returns the AK, creating it on first use. The AK is a restricted RSA
// 2048 signing key under the storage root key; its blob is kept in the
// state dir and reused.
func (t *TPM) ak(ctx context.Context) (*steptpm.AK, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.akLocked(ctx)
}

func (t *TPM) akLocked(ctx context.Context) (*steptpm.AK, error) {
	ak, err := t.tpm.GetAK(ctx, akName)
	if errors.Is(err, steptpm.ErrNotFound) {
		ak, err = t.tpm.CreateAK(ctx, akName)
		if err != nil {
			return nil, fmt.Errorf("tpmkey: creating AK: %w", err)
		}
		return ak, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tpmkey: reading AK: %w", err)
	}
	return ak, nil
}

// AKPublic returns the AK's public area (TPMT_PUBLIC), creating the AK on
// first use. The CA makes its credential challenge for this AK.
func (t *TPM) AKPublic(ctx context.Context) ([]byte, error) {
	ak, err := t.ak(ctx)
	if err != nil {
		return nil, err
	}
	p, err := ak.AttestationParameters(ctx)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: loading AK %s: %w (if the TPM was cleared, Reset and enroll again)", t.store.path(akFilePrefix, akName), err)
	}
	return p.Public, nil
}

// SRKHandle is the persistent handle of the storage root key that the AK
// and device keys are created under (go-attestation's choice).
const SRKHandle = 0x81000001

// AKBlobs returns the AK's public and private blobs in the form tpm2-tools
// take (TPM2B_PUBLIC and TPM2B_PRIVATE, each with its size prefix):
// `tpm2_load -C 0x81000001 -u ak.pub -r ak.priv -c ak.ctx`. The private
// blob is wrapped by this TPM's storage root key.
func (t *TPM) AKBlobs(ctx context.Context) (public, private []byte, err error) {
	ak, err := t.ak(ctx)
	if err != nil {
		return nil, nil, err
	}
	b, err := ak.Blobs(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tpmkey: AK blobs: %w", err)
	}
	if public, err = b.Public(); err != nil {
		return nil, nil, err
	}
	if private, err = b.Private(); err != nil {
		return nil, nil, err
	}
	return public, private, nil
}

// ActivateCredential runs TPM2_ActivateCredential with the AK and the EK
// on the CA's challenge (TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET, as
// ca/attest.MakeCredential makes them) and returns the recovered secret,
// which the agent sends back. It fails if the challenge was not made for
// this TPM's EK and this AK.
func (t *TPM) ActivateCredential(ctx context.Context, credential, secret []byte) ([]byte, error) {
	ak, err := t.ak(ctx)
	if err != nil {
		return nil, err
	}
	out, err := ak.ActivateCredential(ctx, steptpm.EncryptedCredential{Credential: credential, Secret: secret})
	if err != nil {
		return nil, fmt.Errorf("tpmkey: credential activation: %w", err)
	}
	return out, nil
}
