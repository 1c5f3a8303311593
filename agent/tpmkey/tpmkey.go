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
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

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

// ErrNoDeviceKey is returned when the state dir holds no device key yet.
var ErrNoDeviceKey = errors.New("tpmkey: no device key in the state dir (enroll first)")

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
	// (internal/tpmtest sets it); the agent's flags never do.
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

// EKFingerprint is the SHA-256 of an EK public key in PKIX DER form, the
// same value ca/attest computes and the allow-list holds. Text form: 64
// lowercase hex digits.
type EKFingerprint [sha256.Size]byte

// FingerprintEK computes the fingerprint of an EK public key.
func FingerprintEK(pub crypto.PublicKey) (EKFingerprint, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return EKFingerprint{}, fmt.Errorf("tpmkey: EK fingerprint: %w", err)
	}
	return sha256.Sum256(der), nil
}

func (f EKFingerprint) String() string { return hex.EncodeToString(f[:]) }

// MarshalText implements encoding.TextMarshaler (hex).
func (f EKFingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// EK is the TPM's endorsement key.
type EK struct {
	// Public is the EK public key (RSA 2048 on every TPM go-attestation
	// handles: it reads the RSA EK only).
	Public crypto.PublicKey
	// Certificate is the manufacturer's EK certificate from the TPM's NV
	// (or downloaded, when allowed); nil when there is none, as on the
	// simulator and many firmware TPMs.
	Certificate *x509.Certificate
	// CertificateURL is where the manufacturer publishes the certificate,
	// when the TPM says so.
	CertificateURL string
	// Fingerprint is the SHA-256 of Public in PKIX DER form.
	Fingerprint EKFingerprint
}

// Type describes the key, e.g. "RSA 2048" or "ECDSA P-256".
func (ek *EK) Type() string {
	switch k := ek.Public.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	default:
		return fmt.Sprintf("%T", k)
	}
}

// EK reads the endorsement key and its certificate. The EK used for
// credential activation is go-attestation's: the RSA EK of the TCG default
// template (persistent handle 0x81010001).
func (t *TPM) EK(ctx context.Context) (*EK, error) {
	eks, err := t.tpm.GetEKs(ctx)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: reading EK: %w", err)
	}
	var pick *steptpm.EK
	for _, e := range eks {
		if _, ok := e.Public().(*rsa.PublicKey); !ok {
			continue
		}
		if pick == nil || (pick.Certificate() == nil && e.Certificate() != nil) {
			pick = e
		}
	}
	if pick == nil {
		return nil, errors.New("tpmkey: the TPM has no RSA endorsement key")
	}
	fp, err := FingerprintEK(pick.Public())
	if err != nil {
		return nil, err
	}
	return &EK{
		Public:         pick.Public(),
		Certificate:    pick.Certificate(),
		CertificateURL: pick.CertificateURL(),
		Fingerprint:    fp,
	}, nil
}

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
