// Package tpmkey is the agent's side of TPM 2.0 device identity: it opens
// the TPM, reads the endorsement key (EK), keeps an attestation key (AK),
// answers the CA's credential-activation challenge, and creates the device
// key — a non-exportable ECC P-256 key generated inside the TPM and
// certified by the AK with TPM2_Certify over the enrollment's qualifying
// data. The device key's private part never leaves the TPM: [Signer]s sign
// by asking the TPM.
//
// It is built on go.step.sm/crypto/tpm (itself on go-attestation and
// go-tpm). Its blobs — the AK and device keys, each a public area plus a
// private area wrapped by the TPM's storage root key, so useless on
// another TPM — are kept as files of mode 0600 in Config.StateDir and are
// reused after a restart.
//
// Enrollment, agent side (the CA side of each step is in ca/attest):
//
//	t, _ := tpmkey.Open(ctx, tpmkey.Config{StateDir: dir})
//	ek, _ := t.EK(ctx)              // send ek.Certificate.Raw (or ek.Public)
//	akPub, _ := t.AKPublic(ctx)      // send; the CA answers MakeCredential's challenge
//	secret, _ := t.ActivateCredential(ctx, ch.Credential, ch.Secret) // send back
//	qd := tpmkey.QualifyingData(nonce, wgPublicKey)
//	dk, _ := t.CreateDeviceKey(ctx, qd) // send dk.Attestation; sign the CSR with dk.Signer
//
// After a restart, [TPM.DeviceSigner] gives the same key back; a renewal
// that keeps the key sends [TPM.CertifyDeviceKey] over the new nonce.
//
// This package never imports a server package; the CA-side checks are in
// ca/attest.
package tpmkey

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	steptpm "go.step.sm/crypto/tpm"
	"go.step.sm/crypto/tpm/simulator"
)

// DefaultDevice is the TPM opened when Config.Device is empty: the kernel's
// resource-managed TPM device.
const DefaultDevice = "/dev/tpmrm0"

// Names under which the AK and device keys are kept in the state dir.
const (
	akName          = "certmesh-ak"
	deviceKeyPrefix = "certmesh-device-"
)

// Config says which TPM to open and where to keep its blobs.
type Config struct {
	// Device is the TPM character device (or a TPM simulator's unix
	// socket). Empty means [DefaultDevice].
	Device string
	// StateDir is where AK and device key blobs are kept (made 0700 —
	// created so, or narrowed if it is open to group or others; files are
	// 0600). Required. Give each TPM its own directory:
	// the blobs only load on the TPM that made them.
	StateDir string
	// DownloadEKCertificate lets go.step.sm/crypto fetch the EK certificate
	// from the manufacturer when the TPM has none in NV but names a URL
	// (Intel PTT). Off by default: opening the TPM makes no network calls.
	DownloadEKCertificate bool

	// Simulator, when set, is used instead of Device. For tests only
	// (tstest/tpmtest sets it); the agent's flags never do.
	Simulator simulator.Simulator
}

// TPM is an open TPM with its state dir. Its methods are safe for
// concurrent use; the TPM itself serializes commands.
type TPM struct {
	cfg   Config
	tpm   *steptpm.TPM
	store *fileStore
	ch    *deviceChannel

	mu sync.Mutex // serializes compound operations (create AK, replace device key)
}

// Open opens the TPM described by cfg and checks that it answers as a TPM
// 2.0. It does not create anything yet.
func Open(ctx context.Context, cfg Config) (*TPM, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("tpmkey: no state dir configured")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("tpmkey: state dir: %w", err)
	}
	if st, err := os.Stat(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("tpmkey: state dir: %w", err)
	} else if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("tpmkey: state dir: %w", err)
		}
	}
	store := &fileStore{dir: cfg.StateDir}
	opts := []steptpm.NewTPMOption{steptpm.WithStore(store)}
	if !cfg.DownloadEKCertificate {
		opts = append(opts, steptpm.WithDisableDownload())
	}
	t := &TPM{cfg: cfg, store: store}
	if cfg.Simulator != nil {
		opts = append(opts, steptpm.WithSimulator(cfg.Simulator))
	} else {
		if t.cfg.Device == "" {
			t.cfg.Device = DefaultDevice
		}
		if _, err := os.Stat(t.cfg.Device); err != nil {
			return nil, fmt.Errorf("tpmkey: no TPM at %s: %w", t.cfg.Device, err)
		}
		// go-attestation ignores device names and probes /sys/class/tpm
		// on its own; a command channel makes it use the configured device.
		t.ch = &deviceChannel{path: t.cfg.Device}
		opts = append(opts, steptpm.WithDeviceName(t.cfg.Device), steptpm.WithCommandChannel(t.ch))
	}
	st, err := steptpm.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: %w", err)
	}
	t.tpm = st
	info, err := st.Info(ctx)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("tpmkey: TPM at %s does not answer: %w", t.where(), err)
	}
	if info.Version != steptpm.Version(2) {
		t.Close()
		return nil, fmt.Errorf("tpmkey: TPM at %s is %s; TPM 2.0 is required", t.where(), info.Version)
	}
	return t, nil
}

func (t *TPM) where() string {
	if t.cfg.Simulator != nil {
		return "simulator"
	}
	return t.cfg.Device
}

// Close releases the device. The simulator, if any, is closed by its owner.
func (t *TPM) Close() error {
	if t.ch != nil {
		return t.ch.Close()
	}
	return nil
}

// StateDir returns the directory holding the blobs.
func (t *TPM) StateDir() string { return t.cfg.StateDir }

// Info is what the TPM says about itself, for the admin's approval screen.
type Info struct {
	// ManufacturerID is TPM_PT_MANUFACTURER as its four ASCII characters
	// (trailing spaces and NULs removed), e.g. "IFX", "NTC", "STM", "MSFT".
	ManufacturerID string `json:"manufacturer_id"`
	// Manufacturer is the vendor's name when known, e.g. "Infineon".
	Manufacturer string `json:"manufacturer,omitempty"`
	// VendorInfo is TPM_PT_VENDOR_STRING_1..4.
	VendorInfo string `json:"vendor_info,omitempty"`
	// FirmwareVersion is "major.minor".
	FirmwareVersion string `json:"firmware_version"`
}

// String is a one-line description: "Infineon (IFX) SLB9670, firmware 7.85".
func (i Info) String() string {
	var b strings.Builder
	if i.Manufacturer != "" && i.Manufacturer != i.ManufacturerID {
		fmt.Fprintf(&b, "%s (%s)", i.Manufacturer, i.ManufacturerID)
	} else {
		b.WriteString(i.ManufacturerID)
	}
	if i.VendorInfo != "" {
		b.WriteString(" " + i.VendorInfo)
	}
	if i.FirmwareVersion != "" {
		b.WriteString(", firmware " + i.FirmwareVersion)
	}
	return b.String()
}

// Info reads the manufacturer, vendor string and firmware version.
func (t *TPM) Info(ctx context.Context) (Info, error) {
	info, err := t.tpm.Info(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("tpmkey: TPM info: %w", err)
	}
	clean := func(s string) string { return strings.TrimSpace(strings.Trim(s, "\x00 ")) }
	return Info{
		ManufacturerID:  clean(info.Manufacturer.ASCII),
		Manufacturer:    clean(info.Manufacturer.Name),
		VendorInfo:      clean(info.VendorInfo),
		FirmwareVersion: info.FirmwareVersion.String(),
	}, nil
}

// Reset forgets the AK and every device key: it deletes their blobs from
// the state dir (the TPM holds no copy: they were never made persistent).
// Use it when the blobs no longer load — the TPM was cleared or replaced —
// before enrolling again.
func (t *TPM) Reset() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for _, n := range t.store.ListKeyNames() {
		if strings.HasPrefix(n, deviceKeyPrefix) {
			if err := t.store.DeleteKey(n); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := t.store.DeleteAK(akName); err != nil && !errors.Is(err, steptpm.ErrNotFound) && !isStoreNotFound(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
